import groovy.json.JsonSlurper
import java.nio.ByteBuffer
import java.nio.ByteOrder

def log = new File(basedir, 'build.log').text
def soupFile = new File(basedir, 'target/kiln/model-soup.safetensors')
def reportFile = new File(basedir, 'target/kiln/model-soup.report.json')
assert soupFile.isFile() && reportFile.isFile()

// Count the zeros in the written soup straight from the safetensors bytes, independently of Kiln's own count.
def raw = soupFile.bytes
long headerLength = ByteBuffer.wrap(raw, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong()
def header = new JsonSlurper().parseText(new String(raw, 8, (int) headerLength, 'UTF-8'))
assert header.__metadata__['kiln.format'] == 'model-v1'
assert header.__metadata__['kiln.model'] == 'cnn'
def prunable = ['conv1.weight', 'conv2.weight', 'fc1.weight', 'fc.weight']
long zeros = 0
long size = 0
prunable.each { name ->
    def t = header[name]
    assert t.dtype == 'F32'
    def floats = ByteBuffer.wrap(raw, (int) (8 + headerLength + t.data_offsets[0]),
            (int) (t.data_offsets[1] - t.data_offsets[0])).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    long n = floats.remaining()
    long z = 0
    // Math.abs: Groovy's == compares floats with compareTo, which tells -0.0 (a masked negative weight) from 0.0.
    for (int i = 0; i < n; i++) { if (Math.abs(floats.get(i)) == 0f) z++ }
    // Per-tensor magnitude pruning to 80% keeps round(0.2 n) weights; the soup has exactly the other zeros.
    assert z == n - Math.round(0.2d * n) : "$name: $z zeros of $n"
    zeros += z
    size += n
}
// Biases and batch norm are never pruned.
def bias = header['fc.bias']
def biasFloats = ByteBuffer.wrap(raw, (int) (8 + headerLength + bias.data_offsets[0]),
        (int) (bias.data_offsets[1] - bias.data_offsets[0])).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
for (int i = 0; i < biasFloats.remaining(); i++) { assert Math.abs(biasFloats.get(i)) != 0f }

def report = new JsonSlurper().parse(reportFile)
assert Math.abs(report.soupSparsity - zeros / (double) size) < 1e-12
assert report.soupSparsity == report.maskSparsity
assert report.maskViolations == 0
assert report.roundResults.size() == 2
assert Math.abs(report.roundResults[0].sparsity - 0.4) < 1e-12
assert Math.abs(report.roundResults[1].sparsity - 0.8) < 1e-12
assert report.roundResults.every { it.ingredientAccuracies.size() == 2 }
// Fine-tuning under the mask keeps a usable model (one-shot 80% pruning of such a cnn loses far more).
assert report.soupAccuracy > 0.6 : "soup accuracy ${report.soupAccuracy}"

assert log.count('Sparse soup of model.safetensors') == 1
assert log.count('Sparse soup is up to date, skipping it') == 1
assert log.contains('Soup sparsity')
return true
