"""Audio in, examples out: I/O, clean sources, noise, recording eras and rooms, mixing, the DataModule."""
