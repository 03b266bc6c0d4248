"""Control inputs (OSC now; MIDI and OSCQuery later): they only produce Changes."""
