#!/bin/sh
# Entrypoint of the Debian-built stand-in for the official redis image; it follows the official
# docker-entrypoint.sh: flags or a *.conf first argument mean redis-server; redis-server started
# as root gets /data handed to the redis user and runs as that user; anything else runs as is.
# The official binary is built with protected mode off by default; Debian's is not, so this
# script turns it off unless the command line or the given config file sets it.
set -e

# first arg is `-f` or `--some-option`, or first arg is `something.conf`
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# true if the command ($1) is redis-server, by name or by path
is_redis_server() {
	[ "$1" = 'redis-server' ] \
		|| [ "$(command -v -- "$1" 2> /dev/null || :)" = "$(command -v redis-server)" ]
}

# allow the container to be started with `--user`
if is_redis_server "$1" && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --clear-groups -- "$0" "$@"
fi

# set an appropriate umask (if one isn't set already), as the official image does
um="$(umask)"
if [ "$um" = '0022' ]; then
	umask 0077
fi

if is_redis_server "$1"; then
	# redis-server [/path/to/redis.conf | -] [--option value ...]: protected mode is left to
	# whoever sets it (the config file or an option); "-" (config on stdin) cannot be checked.
	protected_mode_set=
	case "${2:-}" in
		'' | --*) ;;
		-) protected_mode_set=stdin ;;
		*)
			if grep -Eqi '^[[:space:]]*protected-mode[[:space:]]' "$2" 2> /dev/null; then
				protected_mode_set=config
			fi
			;;
	esac
	for arg; do
		case "$arg" in
			--[Pp][Rr][Oo][Tt][Ee][Cc][Tt][Ee][Dd]-[Mm][Oo][Dd][Ee]) protected_mode_set=option ;;
		esac
	done
	if [ -z "$protected_mode_set" ]; then
		set -- "$@" --protected-mode no
	fi
fi

exec "$@"
