# Renders the Liquid corpus with ruby-liquid (the oracle), as tests/liquid/run.sh compares it
# with nudge: each case is Liquid::Template.parse(template).render(context) in Ruby's default
# lax mode, with partials served from the case's "partials" and "globals" as the static
# environment. Prints one JSON line per case: {"name", "output"} or {"name", "error"}.
#
# Usage: TZ=UTC ruby tests/liquid/ruby_render.rb FILE.jsonl...
require 'json'
require 'liquid'

Encoding.default_external = Encoding::UTF_8
Encoding.default_internal = Encoding::UTF_8

# Partials come only from the case, as nudge's PartialLookup serves them.
class CaseFileSystem
  def initialize(partials)
    @partials = partials
  end

  def read_template_file(name)
    @partials.fetch(name) { raise Liquid::FileSystemError, "No such template '#{name}'" }
  end
end

def render_case(c)
  out = { 'name' => c['name'] }
  template = Liquid::Template.parse(c['template'] || '')
  fs = CaseFileSystem.new(c['partials'] || {})
  data = c['context'] || {}
  out['output'] =
    if c['globals']
      ctx = Liquid::Context.build(environments: [data], static_environments: c['globals'],
                                  registers: { file_system: fs })
      template.render(ctx)
    else
      template.render(data, registers: { file_system: fs })
    end
  out
rescue StandardError => e
  out['error'] = "#{e.class}: #{e.message}"
  out
end

ARGV.each do |file|
  File.foreach(file, encoding: 'UTF-8') do |line|
    next if line.strip.empty?
    puts JSON.generate(render_case(JSON.parse(line)))
  end
end
