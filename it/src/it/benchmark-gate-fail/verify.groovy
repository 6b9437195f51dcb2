import groovy.json.JsonSlurper

def log = new File(basedir, 'build.log').text
// The report is written before the gates fail the build.
def json = new File(basedir, 'target/kiln/benchmark/report.json')
assert json.isFile()
assert new File(basedir, 'target/kiln/benchmark/report.md').isFile()
assert new File(basedir, 'target/kiln/benchmark/report.html').isFile()
def report = new JsonSlurper().parse(json)
assert !report.passed
// No variants declared: the implicit baseline is measured.
assert report.variants*.name == ['baseline']
def accuracy = report.variants[0].accuracy as double
assert accuracy < 0.99
assert report.gates.size() == 1 && !report.gates[0].passed

// The failure names the gate, the variant, the measured value and the bar.
def measured = report.gates[0].message.find(/measured (\S+)/) { all, v -> v }
assert Math.abs((measured as double) - accuracy) < 1e-4
assert log.contains("gate minAccuracy for variant 'baseline' missed: measured ${measured} < required 0.99")
assert log.contains('1 benchmark gate missed')
assert log.contains('BUILD FAILURE')
assert !log.contains('Exception in thread')
return true
