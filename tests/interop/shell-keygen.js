// Runs JS hypershell-keygen's own `cmd` for the shell interop tests
// (transport-native/tests/shell_interop.rs): `bin/keygen.js` only runs as the main script, and
// under tool-run.js it is not, so it exports `cmd` instead. Usage: node shell-keygen.js FILE
require('hypershell/bin/keygen.js')({ f: process.argv[2] })
