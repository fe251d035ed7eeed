//! The staff chat's guided `/broadcast` (filled in below).
