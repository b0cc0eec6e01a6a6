"""Request dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.queue import AskGate
from coach.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_ask_gate(request: Request) -> AskGate:
    gate: AskGate = request.app.state.ask_gate
    return gate


AskGateDep = Annotated[AskGate, Depends(get_ask_gate)]
