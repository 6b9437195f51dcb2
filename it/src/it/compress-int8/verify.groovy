import groovy.json.JsonSlurper

def log = new File(basedir, 'build.log').text
def model = new File(basedir, 'target/kiln/model.safetensors')
def compressed = new File(basedir, 'target/kiln/model-int8.safetensors')
def reportFile = new File(basedir, 'target/kiln/model-int8.report.json')
assert model.isFile() && compressed.isFile()
// int8 weights with float32 scales: well under half of the float32 file.
assert compressed.length() < model.length() * 0.5 : "${compressed.length()} vs ${model.length()}"
assert reportFile.isFile()

def report = new JsonSlurper().parse(reportFile)
assert report.compressor == 'int8'
assert report.bytesAfter < report.bytesBefore
assert report.ratio > 2.5
assert report.fileBytesAfter == compressed.length()
assert report.accuracyBefore > 0.5 : "accuracy before ${report.accuracyBefore}"
assert Math.abs(report.accuracyAfter - report.accuracyBefore) <= 0.01 : "accuracy ${report.accuracyBefore} -> ${report.accuracyAfter}"
assert report.tensors*.name.containsAll(['conv1.weight', 'conv2.weight', 'fc1.weight', 'fc.weight'])
assert report.tensors.every { it.relativeError > 0 && it.relativeError < 0.02 }
assert report.copied.contains('fc.bias')

// The header says what the file holds.
def raw = compressed.bytes
long headerLength = 0
for (int i = 7; i >= 0; i--) { headerLength = (headerLength << 8) | (raw[i] & 0xff) }
def header = new JsonSlurper().parseText(new String(raw, 8, (int) headerLength, 'UTF-8'))
assert header['conv2.weight.q'].dtype == 'I8'
assert header.__metadata__['kiln.format'] == 'compressed-v1'
assert new JsonSlurper().parseText(header.__metadata__['kiln.compressed']).compressor == 'int8'

assert log.count('Compressing model.safetensors with int8') == 1
assert log.count('Compressed model is up to date, skipping compression') == 1
assert log.contains('Test accuracy before')

// The benchmark measured the int8 model against the original and its gate passed (twice: both builds run it).
def bench = new JsonSlurper().parse(new File(basedir, 'target/kiln/benchmark/report.json'))
def int8 = bench.variants.find { it.name == 'int8' }
def fp32 = bench.variants.find { it.name == 'fp32' }
assert int8 != null && fp32 != null
assert int8.accuracy >= fp32.accuracy - 0.01
assert log.contains("gate maxAccuracyDrop for variant 'int8' met")
assert !log.contains('missed')
return true
