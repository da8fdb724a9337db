# Generates src/content/internal/unicode_case.cc: the case mappings of Ruby's String#upcase,
# #downcase and #capitalize, so that nudge's filters change case exactly as ruby-liquid does.
#
# Usage: ruby tests/liquid/gen_case_tables.rb src/content/internal/unicode_case.cc
up=[]; down=[]; title=[]
(0..0x10FFFF).each do |cp|
  next if cp >= 0xD800 && cp <= 0xDFFF
  s = cp.chr(Encoding::UTF_8)
  u = s.upcase; d = s.downcase; t = s.capitalize
  up << [cp, u] if u != s
  down << [cp, d] if d != s
  title << [cp, t] if t != u   # titlecase differs from upcase
end
def esc(s) s.bytes.map { |b| format("\\x%02X", b) }.join end
out = +""
out << "// Generated from Ruby #{RUBY_VERSION} (Unicode #{RbConfig::CONFIG['UNICODE_VERSION']}) String#upcase,\n"
out << "// #downcase and #capitalize applied to every code point, by tests/liquid/gen_case_tables.rb.\n"
out << "// Do not edit by hand.\n// clang-format off\n"
out << "#include \"content/internal/unicode_case.h\"\n\nnamespace nudge::content::internal {\n\n"
[["kUpper", up], ["kLower", down], ["kTitle", title]].each do |name, tbl|
  out << "const CaseMapping #{name}[] = {\n"
  tbl.each { |cp, m| out << "    {0x#{cp.to_s(16).upcase}, \"#{esc(m)}\"},\n" }
  out << "};\nconst size_t #{name}Size = sizeof(#{name}) / sizeof(#{name}[0]);\n\n"
end
out << "}  // namespace nudge::content::internal\n// clang-format on\n"
File.write(ARGV[0], out)
puts up.size, down.size, title.size
