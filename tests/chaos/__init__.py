"""The soak: randomized faults with an exact end-to-end check (``make soak``)."""
