//! Examples of littleboss programs; see the `examples/` folder of this package.
