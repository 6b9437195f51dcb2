def log = new File(basedir, 'build.log').text
// A misspelt id fails the build (a user error, not a crash) and suggests the right one.
assert log.contains("unknown merge method 'tie'; did you mean 'ties'?")
assert log.contains('BUILD FAILURE')
assert !log.contains('Exception in thread')
return true
