//! hypercore: the signed append-only log. (being written)
