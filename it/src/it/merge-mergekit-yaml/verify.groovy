import groovy.json.JsonSlurper
import java.nio.ByteBuffer
import java.nio.ByteOrder

def log = new File(basedir, 'build.log').text
assert log.contains('Merging because inputs changed')
assert log.contains("'int8_mask' is ignored")
assert log.contains("'tokenizer_source' is ignored")

def file = new File(basedir, 'target/kiln/merged.safetensors')
assert file.isFile()
byte[] bytes = file.bytes
def buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
long headerLength = buffer.getLong(0)
def header = new JsonSlurper().parseText(new String(bytes, 8, (int) headerLength, 'UTF-8'))
def weight = header['layer.weight']
// dtype: float16 in the recipe sets the output dtype.
assert weight.dtype == 'F16'
assert header['__metadata__']['kiln.merge.method'] == 'task-arithmetic'
long start = 8 + headerLength + weight.data_offsets[0]
// base + 0.5 * (a - base) + 1.0 * (b - base): element 0: 0 + 0.5 + 2 = 2.5; 1: 1 - 1 - 2 = -2; 4: 0.5 + 0.5 - 3 = -2.
def half = { int i ->
    int bits = buffer.getShort((int) (start + 2 * i)) & 0xffff
    int sign = bits >> 15, exp = (bits >> 10) & 0x1f, mant = bits & 0x3ff
    double v = exp == 0 ? mant / 1024.0 * Math.pow(2, -14) : (1 + mant / 1024.0) * Math.pow(2, exp - 15)
    sign ? -v : v
}
assert half(0) == 2.5d
assert half(1) == -2.0d
assert half(4) == -2.0d
assert new JsonSlurper().parse(new File(basedir, 'target/kiln/merged.merge-report.json')).method == 'task-arithmetic'
return true
