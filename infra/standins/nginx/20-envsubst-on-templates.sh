#!/bin/sh
# Renders nginx configuration templates, as the official image's hook of the same name does:
# every file under $NGINX_ENVSUBST_TEMPLATE_DIR (default /etc/nginx/templates) whose name ends
# in $NGINX_ENVSUBST_TEMPLATE_SUFFIX (default .template) is passed through envsubst into
# $NGINX_ENVSUBST_OUTPUT_DIR (default /etc/nginx/conf.d) under the same relative path, less
# the suffix. Only variables defined in the environment are substituted (optionally only those
# whose names match the regular expression $NGINX_ENVSUBST_FILTER), so nginx's own $variables
# pass through untouched. An output directory that is not writable is an error that is logged
# and skipped (nginx then starts with the configuration it has).
set -e

ME=$(basename "$0")

entrypoint_log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$@"
    fi
}

render_templates() {
    template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
    suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
    output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}

    [ -d "$template_dir" ] || return 0
    if [ ! -w "$output_dir" ]; then
        entrypoint_log "$ME: ERROR: $template_dir exists, but $output_dir is not writable"
        return 0
    fi

    # "${A} ${B} ..." for the names in the environment (read by awk from its ENVIRON, so a
    # multi-line value can never be mistaken for a name); the filter is read the same way.
    # shellcheck disable=SC2016 # the ${...} are for awk's printf, not for this shell
    defined_envs=$(awk 'END {
        filter = ENVIRON["NGINX_ENVSUBST_FILTER"]
        for (name in ENVIRON)
            if (name ~ /^[A-Za-z_][A-Za-z0-9_]*$/ && name ~ filter)
                printf "${%s} ", name
    }' </dev/null)

    find "$template_dir" -follow -type f -name "*$suffix" -print | sort | while read -r template; do
        relative_path=${template#"$template_dir"/}
        output_path=$output_dir/${relative_path%"$suffix"}
        mkdir -p "$(dirname "$output_path")"
        entrypoint_log "$ME: Running envsubst on $template to $output_path"
        envsubst "$defined_envs" <"$template" >"$output_path"
    done
}

render_templates

exit 0
