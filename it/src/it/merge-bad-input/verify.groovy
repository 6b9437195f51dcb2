def log = new File(basedir, 'build.log').text
// Model b's tensor is 3x2 where model a's is 2x3: a user error naming the tensor and both shapes, before any output.
assert log.contains("tensor 'layer.weight' has shape [3, 2]")
assert log.contains('but shape [2, 3]')
assert log.contains('BUILD FAILURE')
assert !log.contains('Exception in thread')
assert !new File(basedir, 'target/kiln/merged.safetensors').exists()
def kiln = new File(basedir, 'target/kiln')
assert !kiln.exists() || !kiln.listFiles().any { it.name.startsWith('merged') }
return true
