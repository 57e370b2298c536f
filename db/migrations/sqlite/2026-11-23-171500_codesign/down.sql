DROP TABLE codesign_signatures;
DROP TABLE codesign_keys;
