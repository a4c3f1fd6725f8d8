"""Real inference engines the tests start: llama.cpp's own server, on the CPU, offline."""
