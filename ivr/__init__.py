"""ivr: real-time voice IVRs on Asterisk (ARI + AudioSocket) driven by YAML call flows."""

__version__ = "0.1.0"
