#!/bin/sh
# Regenerates the real-speech fixtures (espeak-ng + sox; a different voice family
# from any TTS under test). Leading/trailing silence is trimmed so the speech
# onset is sample 0 and tests place it where they want.
set -eu
cd "$(dirname "$0")"
gen() {  # name voice text
    espeak-ng -v "$2" -s 150 -w /tmp/"$1".raw.wav "$3"
    for rate in 8000 16000; do
        sox /tmp/"$1".raw.wav -r "$rate" -c 1 -b 16 "$1"_"$((rate / 1000))k".wav \
            silence 1 0.01 -45d reverse silence 1 0.01 -45d reverse norm -3
    done
    rm -f /tmp/"$1".raw.wav
}
gen caller en-us "my account number is four two seven"
gen prompt en-gb "please say your account number"
