import groovy.json.JsonSlurper

def log = new File(basedir, 'build.log').text
def card = new JsonSlurper().parse(new File(basedir, 'target/kiln/lm.card.json'))
assert card.model.id == 'decoder-lm'
assert card.skip.id == 'layerdrop'
assert (card.skip.params['early-exit-scale'] as double) == 1.0d && card.skip.params['early-exit-curriculum'] == 'none' : "skip params ${card.skip.params}"
// Trained below the uniform byte model's perplexity of 256.
assert card.validationPerplexity < 200 : "validation perplexity ${card.validationPerplexity}"

def report = new JsonSlurper().parse(new File(basedir, 'target/kiln/lm-benchmark/report.json'))
assert report.variants*.name == ['full', 'half']
def full = report.variants[0]
def half = report.variants[1]
assert full.perplexity > 1 && half.perplexity > 1
assert half.blocksRun == 2.0 && full.blocksRun == 4.0
assert half.measurements.decodeTokensPerSecond['batch 4'] > 0
assert half.measurements.prefillTokensPerSecond['batch 1'] > 0
assert log.contains("gate maxPerplexity for variant 'half' met")
assert log.contains("gate minSpeedup for variant 'half' met")
assert new File(basedir, 'target/kiln/lm-benchmark/report.html').text.contains('validation perplexity')
return true
