# ruby-liquid's side of bench/liquid/run.sh: the same cases and measurements as liquid_bench
# (parses/s, then renders/s of pre-parsed templates with pre-built contexts, each for SECONDS
# seconds), the first render of each case written to OUT.jsonl.
#
# Usage: TZ=UTC ruby bench.rb SECONDS OUT.jsonl FILE.jsonl...
require 'json'
require 'liquid'

Encoding.default_external = Encoding::UTF_8

class CaseFileSystem
  def initialize(partials)
    @partials = partials
  end

  def read_template_file(name)
    @partials.fetch(name) { raise Liquid::FileSystemError, "No such template '#{name}'" }
  end
end

seconds, out_file, *files = ARGV
limit = seconds.to_f
cases = []
skipped = 0
files.each do |f|
  File.foreach(f, encoding: 'UTF-8') do |line|
    next if line.strip.empty?
    c = JSON.parse(line)
    begin
      c['tpl'] = Liquid::Template.parse(c['template'])
      c['fs'] = CaseFileSystem.new(c['partials'] || {})
      cases << c
    rescue StandardError
      skipped += 1
    end
  end
end

def render(c, data)
  if c['globals']
    ctx = Liquid::Context.build(environments: [data], static_environments: c['globals'],
                                registers: { file_system: c['fs'] })
    c['tpl'].render(ctx)
  else
    c['tpl'].render(data, registers: { file_system: c['fs'] })
  end
end

File.open(out_file, 'w') do |out|
  cases.each do |c|
    r = begin
      { 'name' => c['name'], 'output' => render(c, Marshal.load(Marshal.dump(c['context'] || {}))) }
    rescue StandardError => e
      { 'name' => c['name'], 'error' => e.message }
    end
    out.puts JSON.generate(r)
  end
end

clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
parses = 0
start = clock.call
loop do
  cases.each do |c|
    Liquid::Template.parse(c['template'])
    parses += 1
  end
  break if clock.call - start >= limit
end
parse_rate = parses / (clock.call - start)

renders = 0
bytes = 0
start = clock.call
loop do
  cases.each do |c|
    bytes += render(c, c['context'] || {}).bytesize
    renders += 1
  end
  break if clock.call - start >= limit
end
render_rate = renders / (clock.call - start)

puts JSON.generate('engine' => 'ruby-liquid', 'version' => Liquid::VERSION, 'cases' => cases.size,
                   'skipped' => skipped, 'parses_per_s' => parse_rate.to_i,
                   'renders_per_s' => render_rate.to_i, 'output_bytes' => bytes)
