#!/bin/sh
# Regenerates the speech fixture for the offline STT test: espeak-ng (formant
# synthesis, a different voice family from the piper TTS under test), 16 kHz
# mono s16le, silence trimmed, normalised. Needs espeak-ng and sox.
set -eu
cd "$(dirname "$0")"
espeak-ng -v en-us+m3 -s 140 -w /tmp/balance.raw.wav "I would like to check my account balance please"
sox /tmp/balance.raw.wav -r 16000 -c 1 -b 16 balance_16k.wav \
    silence 1 0.01 -45d reverse silence 1 0.01 -45d reverse norm -3 pad 0.2 0.3
rm -f /tmp/balance.raw.wav
