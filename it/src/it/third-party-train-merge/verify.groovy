import groovy.json.JsonSlurper

def log = new File(basedir, 'build.log').text
def kiln = new File(basedir, 'target/kiln')
// The third-party augmentation trained three models; its parameter reached the card.
(1..3).each { i ->
    def card = new JsonSlurper().parse(new File(kiln, "model-${i}.card.json"))
    assert card.augment[0].id == 'acme-cutout'
    assert card.augment[0].params.size == 10
    assert card.augment[0].from.endsWith('acme-cutout-1.0.jar')
    assert card.testAccuracy > 0.5
}

// The third-party merge method wrote the soup: for each weight, the element-wise median of the three models.
def readHeader = { File f ->
    def raw = f.bytes
    long n = 0
    for (int i = 7; i >= 0; i--) { n = (n << 8) | (raw[i] & 0xff) }
    [raw, new JsonSlurper().parseText(new String(raw, 8, (int) n, 'UTF-8')), 8 + n]
}
def floatAt = { byte[] raw, long offset ->
    java.nio.ByteBuffer.wrap(raw, (int) offset, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getFloat()
}
def soup = readHeader(new File(kiln, 'soup.safetensors'))
def models = (1..3).collect { readHeader(new File(kiln, "model-${it}.safetensors")) }
def name = 'fc.weight'
[0, 7, 123].each { index ->
    def values = models.collect { m -> floatAt(m[0], m[2] + m[1][name].data_offsets[0] + 4L * index) }.sort()
    def merged = floatAt(soup[0], soup[2] + soup[1][name].data_offsets[0] + 4L * index)
    assert Math.abs(merged - values[1]) < 1e-6 : "median of ${values} should be ${values[1]}, got ${merged}"
}
assert log.contains('kiln:0.1.0-SNAPSHOT:merge (median-soup)') || log.contains(':merge (median-soup)')
return true
