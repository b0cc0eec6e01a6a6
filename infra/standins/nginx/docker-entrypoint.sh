#!/bin/sh
# Entrypoint with the official nginx image's behaviour: when the command is nginx (or
# nginx-debug), run the hooks in /docker-entrypoint.d/ in version order, then exec the command.
# *.sh hooks are executed, *.envsh hooks are sourced (so what they export reaches nginx and
# the later hooks); hooks without the executable bit are skipped. NGINX_ENTRYPOINT_QUIET_LOGS
# (any non-empty value) silences this script's own messages.
set -e

entrypoint_log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$@"
    fi
}

if [ "${1:-}" = "nginx" ] || [ "${1:-}" = "nginx-debug" ]; then
    hooks=$(find /docker-entrypoint.d/ -follow -type f -print 2>/dev/null | sort -V)
    if [ -n "$hooks" ]; then
        entrypoint_log "$0: /docker-entrypoint.d/ is not empty, will attempt to perform configuration"
        entrypoint_log "$0: Looking for shell scripts in /docker-entrypoint.d/"
        # One hook per line; no globbing of the names.
        set -f
        saved_ifs=$IFS
        IFS='
'
        for hook in $hooks; do
            IFS=$saved_ifs
            set +f
            case "$hook" in
                *.envsh)
                    if [ -x "$hook" ]; then
                        entrypoint_log "$0: Sourcing $hook"
                        # shellcheck disable=SC1090 # the hooks are only known at run time
                        . "$hook"
                    else
                        entrypoint_log "$0: Ignoring $hook, not executable"
                    fi
                    ;;
                *.sh)
                    if [ -x "$hook" ]; then
                        entrypoint_log "$0: Launching $hook"
                        "$hook"
                    else
                        entrypoint_log "$0: Ignoring $hook, not executable"
                    fi
                    ;;
                *)
                    entrypoint_log "$0: Ignoring $hook"
                    ;;
            esac
        done
        IFS=$saved_ifs
        set +f
        entrypoint_log "$0: Configuration complete; ready for start up"
    else
        entrypoint_log "$0: No files found in /docker-entrypoint.d/, skipping configuration"
    fi
fi

exec "$@"
