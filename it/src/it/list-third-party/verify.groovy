def log = new File(basedir, 'build.log').text
// The third-party technique is discovered in the forked worker, with its parameter and default.
assert log.contains('acme-cutout - Zeroes one random square of every image in the batch')
assert log.contains('size = 8')
// Kiln's own families are listed beside it.
assert log.contains('augment (augmentations)')
// The describe form names the jar the technique came from.
assert log =~ /from: .*acme-cutout-1\.0\.jar/
return true
