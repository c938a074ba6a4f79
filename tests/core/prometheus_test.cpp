// Tests for core/prometheus: known figures render as exact lines and as one exact text, every family
// carries # HELP and # TYPE, every line parses as a comment or `name{labels} value`, counters end in
// _total and gauges do not, every protocol error code has its series, and the text ends with a newline.
#include "core/prometheus.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace ringhub {
namespace {

// Every family /metrics promises, by exact name: dashboards and alerts are written against these.
const std::vector<std::string> kFamilies = {
    "ringhub_connections",
    "ringhub_closing_connections",
    "ringhub_line_pending_messages",
    "ringhub_line_held_back_messages",
    "ringhub_buffer_bytes_in_use",
    "ringhub_outbound_queued_bytes",
    "ringhub_frames_in_total",
    "ringhub_frames_out_total",
    "ringhub_bytes_in_total",
    "ringhub_bytes_out_total",
    "ringhub_relays_total",
    "ringhub_deliveries_total",
    "ringhub_skipped_receivers_total",
    "ringhub_protocol_errors_total",
    "ringhub_slow_consumer_closes_total",
    "ringhub_server_full_rejects_total",
    "ringhub_accepted_connections_total",
    "ringhub_copied_bytes_total",
    "ringhub_lent_frames_total",
    "ringhub_budget_pauses_total",
    "ringhub_frame_timeouts_total",
    "ringhub_idle_closes_total",
    "ringhub_memory_budget_bytes",
    "ringhub_memory_in_use_bytes",
    "ringhub_memory_reserved_bytes",
    "ringhub_memory_block_cache_bytes",
    "ringhub_memory_small_block_cache_bytes",
    "ringhub_read_paused_connections",
    "ringhub_cq_overflows_total",
    "ringhub_recv_buffer_waits_total",
    "ringhub_line_forwards_total",
    "ringhub_line_reforwards_total",
    "ringhub_line_unmatched_oks_total",
    "ringhub_line_protocol_errors_total",
    "ringhub_line_messages_total",
    "ringhub_line_oks_delivered_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "ringhub_uptime_seconds",
};

// Each field a distinct value, so a figure rendered under the wrong name shows up.
HubStats known_stats() {
  HubStats s;
  s.connections = 12;
  s.accepted = 40;
  s.frames_in = 1001;
  s.frames_out = 2002;
  s.bytes_in = std::numeric_limits<std::uint64_t>::max();  // no truncation through a double
  s.bytes_out = 4004;
  s.relays = 505;
  s.deliveries = 606;
  s.skipped_receivers = 7;
  s.slow_consumer_closes = 8;
  s.server_full_rejects = 9;
  s.copied_assembly_bytes = 1010;
  s.copied_out_bytes = 1111;
  s.copied_reply_bytes = 1112;
  s.batched_bytes = 1113;
  s.lent_frames = 1114;
  s.memory_in_use = 1414;
  s.memory_budget = 1515;
  s.memory_reserved = 1616;
  s.memory_block_cache = 1717;
  s.memory_small_block_cache = 1718;
  s.read_paused_connections = 16;
  s.budget_pauses = 17;
  s.frame_timeouts = 18;
  s.idle_closes = 19;
  s.outbound_queued_bytes = 1212;
  s.buffer_bytes_in_use = 1313;
  s.cq_overflows = 14;
  s.recv_buffer_waits = 15;
  s.line_connections = 3;
  s.closing_connections = 4;
  s.line_pending = 21;
  s.line_forwards = 22;
  s.line_reforwards = 23;
  s.line_unmatched_oks = 24;
  s.line_protocol_errors = 25;
  s.line_messages_in = 26;
  s.line_oks_delivered = 27;
  for (std::size_t code = 1; code < kErrorCodeSlots; ++code) {
    s.protocol_errors[code] = 100 + code;
  }
  return s;
}

MetricsExtras known_extras() {
  MetricsExtras e;
  e.resident_memory_bytes = 52428800;
  e.open_fds = 17;
  e.uptime_seconds = 12.5;
  return e;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const std::string& l : lines_of(text)) {
    if (l == line) {
      return true;
    }
  }
  return false;
}

// A hand-written reader for the lines of format 0.0.4 (std::regex trips g++ 12's
// -Wmaybe-uninitialized under the sanitizer preset).
bool is_name(std::string_view name, bool colons) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [colons](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || (colons && c == ':');
  });
}

// Consumes `name="value"` (value with \\, \" and \n escapes) from the front of `text`.
bool take_label(std::string_view& text) {
  const auto eq = text.find("=\"");
  if (eq == std::string_view::npos || !is_name(text.substr(0, eq), false)) {
    return false;
  }
  for (std::size_t i = eq + 2; i < text.size(); ++i) {
    if (text[i] == '\\') {
      if (++i == text.size() || (text[i] != '\\' && text[i] != '"' && text[i] != 'n')) {
        return false;
      }
    } else if (text[i] == '"') {
      text.remove_prefix(i + 1);
      return true;
    } else if (text[i] == '\n') {
      return false;
    }
  }
  return false;
}

bool is_value(std::string_view text) {
  if (text == "NaN" || text == "+Inf" || text == "-Inf") {
    return true;
  }
  // from_chars would also take "inf" and "nan", which the format spells differently (above).
  const std::string_view digits = text.starts_with('-') ? text.substr(1) : text;
  if (digits.empty() || !std::isdigit(static_cast<unsigned char>(digits[0]))) {
    return false;
  }
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && end == text.data() + text.size();
}

// The metric name of a sample line `name{labels} value`, or nullopt if the line is not one.
std::optional<std::string> sample_name(std::string_view line) {
  const auto name_end = line.find_first_of("{ ");
  if (name_end == std::string_view::npos || !is_name(line.substr(0, name_end), true)) {
    return std::nullopt;
  }
  std::string name(line.substr(0, name_end));
  line.remove_prefix(name_end);
  if (line.starts_with('{')) {
    line.remove_prefix(1);
    for (;;) {
      if (!take_label(line)) {
        return std::nullopt;
      }
      if (!line.starts_with(',')) {
        break;
      }
      line.remove_prefix(1);
    }
    if (!line.starts_with('}')) {
      return std::nullopt;
    }
    line.remove_prefix(1);
  }
  if (!line.starts_with(' ') || !is_value(line.substr(1))) {
    return std::nullopt;
  }
  return name;
}

struct Comment {
  std::string keyword;  // HELP or TYPE
  std::string name;
  std::string rest;  // the help text, or counter / gauge
};

// `# HELP name text` or `# TYPE name counter|gauge`; nullopt for anything else.
std::optional<Comment> comment(std::string_view line) {
  for (const std::string_view keyword : {"HELP", "TYPE"}) {
    const std::string prefix = "# " + std::string(keyword) + " ";
    if (!line.starts_with(prefix)) {
      continue;
    }
    line.remove_prefix(prefix.size());
    const auto space = line.find(' ');
    if (space == std::string_view::npos || !is_name(line.substr(0, space), true)) {
      return std::nullopt;
    }
    Comment c{std::string(keyword), std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
    const bool ok = keyword == "HELP" ? !c.rest.empty() : (c.rest == "counter" || c.rest == "gauge");
    return ok ? std::optional<Comment>(c) : std::nullopt;
  }
  return std::nullopt;
}

TEST(PrometheusTest, RendersKnownFiguresAsExactLines) {
  const std::string text = render_metrics(known_stats(), known_extras());
  EXPECT_TRUE(has_line(text, R"(ringhub_connections{protocol="relay"} 12)")) << text;
  EXPECT_TRUE(has_line(text, R"(ringhub_connections{protocol="line"} 3)")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_bytes_in_total 18446744073709551615")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_accepted_connections_total 40")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_line_pending_messages 21")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_line_unmatched_oks_total 24")) << text;
  EXPECT_TRUE(has_line(text, "process_resident_memory_bytes 52428800")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_uptime_seconds 12.5")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE ringhub_relays_total counter")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE ringhub_outbound_queued_bytes gauge")) << text;
  EXPECT_TRUE(has_line(text, R"(ringhub_copied_bytes_total{reason="assembly"} 1010)")) << text;
  EXPECT_TRUE(has_line(text, R"(ringhub_copied_bytes_total{reason="copy_out"} 1111)")) << text;
  EXPECT_TRUE(has_line(text, R"(ringhub_copied_bytes_total{reason="reply"} 1112)")) << text;
  EXPECT_TRUE(has_line(text, R"(ringhub_copied_bytes_total{reason="batch"} 1113)")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_memory_in_use_bytes 1414")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_memory_budget_bytes 1515")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_memory_reserved_bytes 1616")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_memory_block_cache_bytes 1717")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_memory_small_block_cache_bytes 1718")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_read_paused_connections 16")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_budget_pauses_total 17")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_frame_timeouts_total 18")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_idle_closes_total 19")) << text;
}

// The whole text, byte for byte: names, HELP, TYPE, labels and order are what scrapers and dashboards
// see, so a change to the RINGHUB_STATS table (core/stats.hpp) that moves any of them shows up here.
TEST(PrometheusTest, RendersTheWholeTextExactly) {
  constexpr std::string_view kExpected =
      R"metrics(# HELP ringhub_connections Client connections open now, by protocol.
# TYPE ringhub_connections gauge
ringhub_connections{protocol="relay"} 12
ringhub_connections{protocol="line"} 3
# HELP ringhub_closing_connections Connections no longer served but still held: refused, half-closed, idle or after an ERROR, written to until their close.
# TYPE ringhub_closing_connections gauge
ringhub_closing_connections 4
# HELP ringhub_line_pending_messages Line-protocol messages forwarded and not yet acknowledged.
# TYPE ringhub_line_pending_messages gauge
ringhub_line_pending_messages 21
# HELP ringhub_line_held_back_messages Line-protocol messages read but held back: sent past their connection's pending allowance while hub memory is past half the budget.
# TYPE ringhub_line_held_back_messages gauge
ringhub_line_held_back_messages 0
# HELP ringhub_buffer_bytes_in_use Receive-buffer bytes out of the ring now.
# TYPE ringhub_buffer_bytes_in_use gauge
ringhub_buffer_bytes_in_use 1313
# HELP ringhub_memory_budget_bytes The memory budget (--max-memory) for what the hub holds for clients.
# TYPE ringhub_memory_budget_bytes gauge
ringhub_memory_budget_bytes 1515
# HELP ringhub_memory_in_use_bytes Bytes held for clients now, as allocated: frames, assemblies, replies, batches, queues.
# TYPE ringhub_memory_in_use_bytes gauge
ringhub_memory_in_use_bytes 1414
# HELP ringhub_memory_reserved_bytes Bytes reserved for the rest of large frames being received, not yet charged.
# TYPE ringhub_memory_reserved_bytes gauge
ringhub_memory_reserved_bytes 1616
# HELP ringhub_memory_block_cache_bytes Freed large blocks kept mapped for reuse (at most 32 MiB), outside the budget.
# TYPE ringhub_memory_block_cache_bytes gauge
ringhub_memory_block_cache_bytes 1717
# HELP ringhub_memory_small_block_cache_bytes Freed small blocks each thread keeps for reuse (at most 256 KiB a thread), outside the budget.
# TYPE ringhub_memory_small_block_cache_bytes gauge
ringhub_memory_small_block_cache_bytes 1718
# HELP ringhub_read_paused_connections Connections whose input is not read until memory frees (backpressure).
# TYPE ringhub_read_paused_connections gauge
ringhub_read_paused_connections 16
# HELP ringhub_outbound_queued_bytes Bytes waiting in outbound queues now.
# TYPE ringhub_outbound_queued_bytes gauge
ringhub_outbound_queued_bytes 1212
# HELP ringhub_frames_in_total Complete client frames parsed (relay frames and lines).
# TYPE ringhub_frames_in_total counter
ringhub_frames_in_total 1001
# HELP ringhub_frames_out_total Frames queued to clients (replies, deliveries, errors; lines for line clients).
# TYPE ringhub_frames_out_total counter
ringhub_frames_out_total 2002
# HELP ringhub_bytes_in_total Bytes received from clients.
# TYPE ringhub_bytes_in_total counter
ringhub_bytes_in_total 18446744073709551615
# HELP ringhub_bytes_out_total Bytes written to client sockets.
# TYPE ringhub_bytes_out_total counter
ringhub_bytes_out_total 4004
# HELP ringhub_relays_total RELAY frames accepted.
# TYPE ringhub_relays_total counter
ringhub_relays_total 505
# HELP ringhub_deliveries_total DELIVER frames queued.
# TYPE ringhub_deliveries_total counter
ringhub_deliveries_total 606
# HELP ringhub_skipped_receivers_total Unknown, departed, duplicate or self receivers skipped.
# TYPE ringhub_skipped_receivers_total counter
ringhub_skipped_receivers_total 7
# HELP ringhub_protocol_errors_total ERROR frames sent, by code.
# TYPE ringhub_protocol_errors_total counter
ringhub_protocol_errors_total{code="1",reason="unknown_frame_type"} 101
ringhub_protocol_errors_total{code="2",reason="bad_receiver_count"} 102
ringhub_protocol_errors_total{code="3",reason="frame_too_large"} 103
ringhub_protocol_errors_total{code="4",reason="length_inconsistent_with_count"} 104
ringhub_protocol_errors_total{code="5",reason="nonzero_flags"} 105
ringhub_protocol_errors_total{code="6",reason="slow_consumer"} 106
ringhub_protocol_errors_total{code="7",reason="server_full"} 107
ringhub_protocol_errors_total{code="8",reason="frame_timeout"} 108
# HELP ringhub_slow_consumer_closes_total Connections closed because their outbound queue passed its limit (ERROR 6).
# TYPE ringhub_slow_consumer_closes_total counter
ringhub_slow_consumer_closes_total 8
# HELP ringhub_server_full_rejects_total Connections refused at --max-connections (ERROR 7).
# TYPE ringhub_server_full_rejects_total counter
ringhub_server_full_rejects_total 9
# HELP ringhub_accepted_connections_total Connections accepted since start.
# TYPE ringhub_accepted_connections_total counter
ringhub_accepted_connections_total 40
# HELP ringhub_copied_bytes_total Bytes copied in user space, by reason: assembly (frames spanning receive buffers), copy_out (a frame copied once out of its receive buffer), reply (hub-composed replies), batch (small deliveries copied per receiver, into a send batch or the queue of a receiver that is behind).
# TYPE ringhub_copied_bytes_total counter
ringhub_copied_bytes_total{reason="assembly"} 1010
ringhub_copied_bytes_total{reason="copy_out"} 1111
ringhub_copied_bytes_total{reason="reply"} 1112
ringhub_copied_bytes_total{reason="batch"} 1113
# HELP ringhub_lent_frames_total RELAY frames sent straight from their receive buffer: every receiver batched them at once, no copy_out.
# TYPE ringhub_lent_frames_total counter
ringhub_lent_frames_total 1114
# HELP ringhub_budget_pauses_total Times a connection's reading was paused because the memory budget was reached.
# TYPE ringhub_budget_pauses_total counter
ringhub_budget_pauses_total 17
# HELP ringhub_idle_closes_total Connections closed after sending nothing for their protocol's idle timeout.
# TYPE ringhub_idle_closes_total counter
ringhub_idle_closes_total 19
# HELP ringhub_frame_timeouts_total Connections closed because a frame stayed unfinished past --frame-timeout (ERROR 8).
# TYPE ringhub_frame_timeouts_total counter
ringhub_frame_timeouts_total 18
# HELP ringhub_cq_overflows_total io_uring completion-queue overflows seen (slow path, no loss).
# TYPE ringhub_cq_overflows_total counter
ringhub_cq_overflows_total 14
# HELP ringhub_recv_buffer_waits_total Receives that stopped because every receive buffer was in use (ENOBUFS); each waits for one back.
# TYPE ringhub_recv_buffer_waits_total counter
ringhub_recv_buffer_waits_total 15
# HELP ringhub_line_forwards_total Line-protocol messages forwarded.
# TYPE ringhub_line_forwards_total counter
ringhub_line_forwards_total 22
# HELP ringhub_line_reforwards_total Line-protocol messages forwarded again after a receiver left.
# TYPE ringhub_line_reforwards_total counter
ringhub_line_reforwards_total 23
# HELP ringhub_line_unmatched_oks_total Line-protocol acknowledgements that matched no pending message.
# TYPE ringhub_line_unmatched_oks_total counter
ringhub_line_unmatched_oks_total 24
# HELP ringhub_line_protocol_errors_total Malformed line-protocol input refused.
# TYPE ringhub_line_protocol_errors_total counter
ringhub_line_protocol_errors_total 25
# HELP ringhub_line_messages_total Line-protocol `message X` lines received.
# TYPE ringhub_line_messages_total counter
ringhub_line_messages_total 26
# HELP ringhub_line_oks_delivered_total Line-protocol `ok X` lines queued to the connection that sent `message X` while it was known.
# TYPE ringhub_line_oks_delivered_total counter
ringhub_line_oks_delivered_total 27
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 52428800
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 17
# HELP ringhub_uptime_seconds Seconds since the hub started.
# TYPE ringhub_uptime_seconds gauge
ringhub_uptime_seconds 12.5
)metrics";
  EXPECT_EQ(render_metrics(known_stats(), known_extras()), kExpected);
}

TEST(PrometheusTest, OneProtocolErrorSeriesPerCodeNamedAsInTheProtocol) {
  const std::string text = render_metrics(known_stats(), known_extras());
  const std::vector<std::string> expected = {
      R"(ringhub_protocol_errors_total{code="1",reason="unknown_frame_type"} 101)",
      R"(ringhub_protocol_errors_total{code="2",reason="bad_receiver_count"} 102)",
      R"(ringhub_protocol_errors_total{code="3",reason="frame_too_large"} 103)",
      R"(ringhub_protocol_errors_total{code="4",reason="length_inconsistent_with_count"} 104)",
      R"(ringhub_protocol_errors_total{code="5",reason="nonzero_flags"} 105)",
      R"(ringhub_protocol_errors_total{code="6",reason="slow_consumer"} 106)",
      R"(ringhub_protocol_errors_total{code="7",reason="server_full"} 107)",
      R"(ringhub_protocol_errors_total{code="8",reason="frame_timeout"} 108)",
  };
  for (const std::string& line : expected) {
    EXPECT_TRUE(has_line(text, line)) << line << "\n" << text;
  }
  EXPECT_EQ(text.find(R"(code="0")"), std::string::npos);  // slot 0 is not a code
}

TEST(PrometheusTest, EveryLineIsACommentOrASample) {
  const std::string text = render_metrics(known_stats(), known_extras());
  for (const std::string& line : lines_of(text)) {
    EXPECT_TRUE(sample_name(line) || comment(line)) << "unparsable line: '" << line << "'";
  }
}

TEST(PrometheusTest, TheLineReaderRefusesMalformedLines) {  // so the test above can fail
  EXPECT_TRUE(sample_name(R"(a_b{x="1",y="q\"uote"} 1.5e3)"));
  EXPECT_FALSE(sample_name("a_b  1"));
  EXPECT_FALSE(sample_name("a_b{x=1} 1"));
  EXPECT_FALSE(sample_name(R"(a_b{x="1"} one)"));
  EXPECT_FALSE(sample_name("1abc 1"));
  EXPECT_FALSE(sample_name("a_b inf"));
  EXPECT_FALSE(comment("# TYPE a_b histogram"));
  EXPECT_FALSE(comment("# HELP a_b"));
}

TEST(PrometheusTest, EveryFamilyHasHelpAndTypeBeforeItsSamples) {
  const std::string text = render_metrics(known_stats(), known_extras());
  std::map<std::string, int> helps;
  std::map<std::string, std::string> types;
  std::set<std::string> sampled;
  for (const std::string& line : lines_of(text)) {
    if (const auto c = comment(line); c && c->keyword == "HELP") {
      ++helps[c->name];
    } else if (c) {
      EXPECT_TRUE(types.emplace(c->name, c->rest).second) << "second # TYPE for " << c->name;
    } else if (const auto name = sample_name(line)) {
      EXPECT_EQ(helps.count(*name), 1U) << "sample before its # HELP: " << line;
      EXPECT_EQ(types.count(*name), 1U) << "sample before its # TYPE: " << line;
      sampled.insert(*name);
    }
  }
  for (const std::string& family : kFamilies) {
    EXPECT_EQ(helps[family], 1) << family;
    EXPECT_EQ(types.count(family), 1U) << family;
    EXPECT_EQ(sampled.count(family), 1U) << family;
  }
  EXPECT_EQ(types.size(), kFamilies.size()) << "a family not in the list: update kFamilies and the docs";
}

TEST(PrometheusTest, CountersEndInTotalAndGaugesDoNot) {
  const std::string text = render_metrics(known_stats(), known_extras());
  for (const std::string& line : lines_of(text)) {
    if (const auto c = comment(line); c && c->keyword == "TYPE") {
      EXPECT_EQ(c->name.ends_with("_total"), c->rest == "counter") << line;
    }
  }
}

TEST(PrometheusTest, EndsWithANewline) {
  const std::string text = render_metrics(HubStats{}, MetricsExtras{});
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find("\n\n"), std::string::npos);  // no blank lines either
}

TEST(PrometheusTest, DefaultExtrasRenderAsZero) {
  const std::string text = render_metrics(HubStats{}, MetricsExtras{});
  EXPECT_TRUE(has_line(text, R"(ringhub_connections{protocol="line"} 0)")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_line_reforwards_total 0")) << text;
  EXPECT_TRUE(has_line(text, "ringhub_uptime_seconds 0")) << text;
}

TEST(PrometheusTest, NonFiniteUptimeUsesTheFormatsSpelling) {
  MetricsExtras extras;
  extras.uptime_seconds = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(has_line(render_metrics(HubStats{}, extras), "ringhub_uptime_seconds NaN"));
  extras.uptime_seconds = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(has_line(render_metrics(HubStats{}, extras), "ringhub_uptime_seconds +Inf"));
}

}  // namespace
}  // namespace ringhub
