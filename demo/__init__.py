"""`txmon demo`: the whole pipeline on one machine, with an injected incident."""
