import groovy.json.JsonSlurper

def log = new File(basedir, 'build.log').text
def model = new File(basedir, 'target/kiln/model.safetensors')
def cardFile = new File(basedir, 'target/kiln/model.card.json')
assert model.isFile() && model.length() > 100_000
assert cardFile.isFile()

def card = new JsonSlurper().parse(cardFile)
assert card.model.id == 'cnn'
assert card.augment*.id == ['cutmix']
assert card.augment[0].params.alpha == 1.0
assert card.dataset.sha256 ==~ /[0-9a-f]{64}/
assert card.seed == 7
assert card.epochs.size() == 12
// The acceptance bar: above 80% on the held-out test split of the embedded data.
assert card.testAccuracy > 0.80 : "test accuracy ${card.testAccuracy}"

// The safetensors header names parameters readably and records the run.
def raw = model.bytes
long headerLength = 0
for (int i = 7; i >= 0; i--) { headerLength = (headerLength << 8) | (raw[i] & 0xff) }
def header = new JsonSlurper().parseText(new String(raw, 8, (int) headerLength, 'UTF-8'))
assert header.keySet().any { it.startsWith('conv1.') }
assert header.__metadata__['kiln.fingerprint'] == card.fingerprint

// Progress reached the Maven log, and the second build skipped the work.
assert log.contains('epoch 12: train loss')
assert log.count('Model is up to date, skipping training') == 1
assert log.count('Training cnn on') == 1
return true
