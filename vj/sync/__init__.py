"""Tempo shared with the rest of the rig: Ableton Link, the beat that follows it, MIDI clock out."""
