# Compares nudge's and ruby-liquid's renders of the corpus (tests/liquid/run.sh): every case
# must render to the same bytes. Prints each mismatch with its template and both outputs; exits
# 1 when there is any.
#
# Usage: ruby tests/liquid/compare.rb CORPUS_DIR NUDGE.jsonl RUBY.jsonl
require 'json'

corpus_dir, nudge_file, ruby_file = ARGV
cases = {}
Dir[File.join(corpus_dir, '*.jsonl')].sort.each do |f|
  File.foreach(f, encoding: 'UTF-8').with_index(1) do |line, n|
    next if line.strip.empty?
    c = JSON.parse(line)
    abort "#{f}:#{n}: duplicate case name #{c['name']}" if cases.key?(c['name'])
    cases[c['name']] = c.merge('file' => "#{File.basename(f)}:#{n}")
  end
end
load = ->(f) { File.readlines(f, encoding: 'UTF-8').map { |l| JSON.parse(l) }.to_h { |r| [r['name'], r] } }
nudge = load.(nudge_file)
ruby = load.(ruby_file)

def show(r)
  return '(missing)' unless r
  r.key?('error') ? "ERROR #{r['error']}" : r['output'].inspect
end

bad = 0
cases.each do |name, c|
  a = nudge[name]
  b = ruby[name]
  same = a && b && a['output'] && b['output'] && a['output'].b == b['output'].b
  next if same
  bad += 1
  puts "MISMATCH #{name} (#{c['file']})"
  puts "  template: #{c['template'].inspect}"
  puts "  context:  #{JSON.generate(c['context'])}" if c['context']
  puts "  nudge:    #{show(a)}"
  puts "  ruby:     #{show(b)}"
end
puts "liquid: #{cases.size - bad}/#{cases.size} cases render identically to ruby-liquid"
exit(bad.zero? ? 0 : 1)
