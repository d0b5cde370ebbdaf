// Tiny argv parser for the interop scripts: positional arguments plus `--name value` and
// bare `--flag` (value true). Unknown options are rejected so a typo fails loudly.
'use strict'

function parse (argv, known) {
  const pos = []
  const opts = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) { pos.push(a); continue }
    const name = a.slice(2)
    if (!(name in known)) fail('unknown option ' + a)
    if (known[name] === 'flag') opts[name] = true
    else {
      if (i + 1 >= argv.length) fail('option ' + a + ' needs a value')
      opts[name] = argv[++i]
    }
  }
  return { pos, opts }
}

function fail (msg) {
  process.stderr.write(msg + '\n')
  process.exit(64)
}

module.exports = { parse, fail }
