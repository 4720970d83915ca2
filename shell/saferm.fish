# saferm for fish: in interactive shells, `rm` archives what it removes before removing it.
# Enable:  saferm --shell-init fish | source   (or put that line in ~/.config/fish/config.fish)
# Bypass:  command rm FILE                     (the real rm, nothing kept)
# Scripts are not affected: the function is defined only in interactive shells.
if status is-interactive; and command -q saferm
    function rm --wraps saferm --description 'rm that keeps a verified archive (saferm)'
        command saferm $argv
    end
    set -gx SAFERM_ALIAS fish
end
