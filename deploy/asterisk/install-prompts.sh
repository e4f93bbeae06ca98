#!/bin/sh
# Install the hotline's Russian prompts on the Asterisk host, where STREAM FILE
# finds them as hotline/ru/<key> (HOTLINE_AGI_SOUNDS_PREFIX, default hotline/ru):
# by default into /var/lib/asterisk/sounds/hotline/ru (Asterisk's sounds folder).
#   sh install-prompts.sh /path/to/voice_models/prompts/ru [/var/lib/asterisk/sounds]
# Run it again after `hotline prompts build` changed the prompts.
set -eu
src=${1:?path of voice_models/prompts/ru}
sounds=${2:-/var/lib/asterisk/sounds}
count=$(ls "$src"/*.wav 2>/dev/null | wc -l)
if [ "$count" -eq 0 ]; then
    echo "install-prompts: no .wav files in $src" >&2
    exit 1
fi
mkdir -p "$sounds/hotline/ru"
cp "$src"/*.wav "$sounds/hotline/ru/"
chmod 0644 "$sounds/hotline/ru/"*.wav
echo "installed $count prompts into $sounds/hotline/ru (HOTLINE_AGI_SOUNDS_PREFIX=hotline/ru)"
# Asterisk runs as the asterisk user: the files must be its to read.
if ! id asterisk >/dev/null 2>&1; then
    echo "install-prompts: warning: there is no asterisk user here; the files belong to $(id -un)," \
        "check that Asterisk can read $sounds/hotline/ru" >&2
    exit 2
fi
if ! chown -R asterisk:asterisk "$sounds/hotline" 2>/dev/null; then
    echo "install-prompts: warning: cannot give $sounds/hotline to the asterisk user" \
        "(run as root, or: chown -R asterisk:asterisk $sounds/hotline)" >&2
    exit 2
fi
