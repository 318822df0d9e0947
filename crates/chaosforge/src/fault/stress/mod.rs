//! Resource exhaustion: stress workers (CPU, memory, disk fill) placed in a cgroup made for the
//! fault, so that `recover` finds and kills them even if the runner died.
