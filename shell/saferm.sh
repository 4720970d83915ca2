# shellcheck shell=sh
# saferm for POSIX shells (dash, ksh, sh): in interactive shells, `rm` archives what it
# removes before removing it.
# Enable:  eval "$(saferm --shell-init sh)"   (or . this file from the file $ENV names)
# Bypass:  \rm FILE   or   command rm FILE     (the real rm, nothing kept)
# Scripts are not affected: aliases only work in interactive shells.
case $- in
    *i*)
        if command -v saferm >/dev/null 2>&1; then
            alias rm='saferm'
            SAFERM_ALIAS='sh'
            export SAFERM_ALIAS
        fi
        ;;
esac
