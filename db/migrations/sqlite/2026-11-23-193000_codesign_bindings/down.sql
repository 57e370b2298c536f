DROP TABLE codesign_bindings;
