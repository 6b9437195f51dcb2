import groovy.json.JsonSlurper
import java.nio.ByteBuffer
import java.nio.ByteOrder

def log = new File(basedir, 'build.log').text
assert log.contains('Merging because inputs changed')
// The second build finds nothing changed.
assert log.contains('Merged model is up to date, skipping merge')
assert !log.contains('BUILD FAILURE')

def file = new File(basedir, 'target/kiln/merged.safetensors')
assert file.isFile()
byte[] bytes = file.bytes
def buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
long headerLength = buffer.getLong(0)
def header = new JsonSlurper().parseText(new String(bytes, 8, (int) headerLength, 'UTF-8'))
def weight = header['layer.weight']
assert weight.dtype == 'F32'
assert weight.shape == [2, 3]
assert header['layer.pos'].dtype == 'I64'
assert header['__metadata__']['kiln.merge.method'] == 'ties'
long start = 8 + headerLength + weight.data_offsets[0]
def values = (0..5).collect { buffer.getFloat((int) (start + 4 * it)) }
// base [0, 1, 2, -1, 0.5, 3]; task vectors a [1, -2, .5, 0, 1, -1], b [2, -2, .5, 1, -3, -1], c [-1, 3, .5, 1, 1, 2].
// Element 0: sum +2 elects +, a and b agree: 0 + (1 + 2) / 2 = 1.5. Element 1: sum -1 elects -, a and b: 1 - 2 = -1.
// Element 2: all agree: 2 + 0.5 = 2.5. Element 4: sum -1 elects -, only b: 0.5 - 3 = -2.5.
def expected = [0: 1.5f, 1: -1.0f, 2: 2.5f, 4: -2.5f]
expected.each { i, v -> assert Math.abs(values[i] - v) < 1e-6 : "element ${i}: ${values[i]} != ${v} (all: ${values})" }
long posStart = 8 + headerLength + header['layer.pos'].data_offsets[0]
assert (0..3).collect { buffer.getLong((int) (posStart + 8 * it)) } == [0L, 1L, 2L, 3L]

def report = new JsonSlurper().parse(new File(basedir, 'target/kiln/merged.merge-report.json'))
assert report.method == 'ties'
assert report.totals.tensors == 2
assert report.tensors['layer.weight'].numel == 6
assert report.tensors['layer.weight'].signConflict > 0
assert new File(basedir, 'target/kiln/merged.safetensors.kiln-fingerprint').isFile()
return true
