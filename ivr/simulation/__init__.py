"""``ivr simulate`` and ``ivr test``: whole calls against a simulated Asterisk and a scripted caller."""
