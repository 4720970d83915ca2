# saferm for bash: in interactive shells, `rm` archives what it removes before removing it.
# Enable:  eval "$(saferm --shell-init bash)"   (or source this file from ~/.bashrc)
# Bypass:  \rm FILE   or   command rm FILE      (the real rm, nothing kept)
# Scripts are not affected: aliases only work in interactive shells.
if [[ $- == *i* ]] && command -v saferm >/dev/null 2>&1; then
    alias rm='saferm'
    export SAFERM_ALIAS=bash
fi
