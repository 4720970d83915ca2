# saferm for zsh: in interactive shells, `rm` archives what it removes before removing it.
# Enable:  eval "$(saferm --shell-init zsh)"   (or source this file from ~/.zshrc)
# Bypass:  \rm FILE   or   command rm FILE      (the real rm, nothing kept)
# Scripts are not affected: aliases only work in interactive shells.
if [[ -o interactive ]] && (( ${+commands[saferm]} )); then
    alias rm='saferm'
    export SAFERM_ALIAS=zsh
fi
