//! Many feeds in one folder, laid out and keyed as corestore 5 does it.
