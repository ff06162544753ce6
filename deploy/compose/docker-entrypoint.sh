#!/bin/sh
# Entry point of the egret image: `docker run egret run --kafka ...` runs
# `egret run --kafka ...`.
#
# The binary reads its two keys from EGRET_TOKEN_KEY and EGRET_PSEUDONYM_KEY. Compose
# (and Docker swarm) hand secrets out as files under /run/secrets, so for each key a
# VAR_FILE variable naming a file is read into VAR first, the convention of the
# official database images. Kubernetes sets the variables themselves from a Secret.
set -eu

for var in EGRET_TOKEN_KEY EGRET_PSEUDONYM_KEY; do
    eval "file=\${${var}_FILE:-}"
    if [ -n "$file" ]; then
        eval "set_already=\${$var:-}"
        if [ -n "$set_already" ]; then
            echo "docker-entrypoint: both $var and ${var}_FILE are set; use one" >&2
            exit 1
        fi
        if [ ! -r "$file" ]; then
            echo "docker-entrypoint: ${var}_FILE=$file is not readable" >&2
            exit 1
        fi
        # $(...) drops the trailing newline an editor or `openssl rand -hex 32 >` leaves.
        value=$(cat "$file")
        export "$var=$value"
        unset "${var}_FILE"
    fi
done

exec egret "$@"
