import groovy.json.JsonSlurper

def log = new File(basedir, 'build.log').text
def dir = new File(basedir, 'target/kiln/benchmark')
def json = new File(dir, 'report.json')
def md = new File(dir, 'report.md')
def html = new File(dir, 'report.html')
assert json.isFile() && md.isFile() && html.isFile()

def report = new JsonSlurper().parse(json)
assert report.model.id == 'resnet'
assert report.samples == 500
assert report.settings.batchSize == 50
assert report.variants*.name == ['full', 'skip-top']
def full = report.variants[0]
def skip = report.variants[1]
assert full.baseline && full.speedup == 1.0
assert full.accuracy >= 0.5 && full.accuracy <= 1.0
assert skip.skip.id == 'contiguous'
// Six residual blocks, the top one dropped.
assert full.blocks == 6 && full.blocksRun == 6.0 && skip.blocksRun == 5.0
assert skip.speedup > 0 && skip.samplesPerSecond > 0
assert full.latencyMillis.p95 >= full.latencyMillis.p50 && full.latency1Millis.p50 > 0
assert full.passSeconds.size() == 2
// Gates: latency for both, accuracy for full, speedup for skip-top; all met.
assert report.gates.size() == 4 && report.gates.every { it.passed }
assert report.passed

def table = md.text
assert table.contains('| full (baseline) |') && table.contains('| skip-top | contiguous')
assert table.contains(String.format(Locale.ROOT, '%.4f', full.accuracy as double))
def page = html.text
assert page.contains('<svg') && page.count('<circle class="point"') == 2 && !page.contains('<script')

assert log.contains('gate minAccuracy for variant \'full\' met')
assert log.contains('Benchmark gates passed')
assert log.contains('BUILD SUCCESS')
return true
