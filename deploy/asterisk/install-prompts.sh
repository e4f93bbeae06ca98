#!/bin/sh
# Install the hotline's Russian prompts on the Asterisk host, where STREAM FILE
# finds them as hotline/ru/<key> (HOTLINE_AGI_SOUNDS_PREFIX, default hotline/ru).
#   sh install-prompts.sh /path/to/voice_models/prompts/ru [/var/lib/asterisk/sounds]
# Run it again after `hotline prompts build` changed the prompts.
set -eu
src=${1:?path of voice_models/prompts/ru}
sounds=${2:-/var/lib/asterisk/sounds}
mkdir -p "$sounds/hotline/ru"
cp "$src"/*.wav "$sounds/hotline/ru/"
chown -R asterisk:asterisk "$sounds/hotline" 2>/dev/null || true
echo "installed $(ls "$src"/*.wav | wc -l) prompts into $sounds/hotline/ru"
