//! The six files of a hypercore 9 directory (hypercore-default-storage on
//! random-access-file): `key`, `secret_key`, `data`, `tree`, `signatures`, `bitfield`,
//! with their 32-byte headers, byte for byte as Node writes them. Also an in-memory
//! backend for tests.
