// ringhub-client: the relay and LINE protocols from the shell, for trying a hub out and for scripts.
//   ringhub-client identity | list | relay --to 2,3 --body hi | listen --count 1 | line --message hi
// Parses flags, calls client/relay_client or client/line_client, prints results; errors go to stderr
// with exit status 2 for a command line it cannot use and 1 for a failure at run time.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "apps/cli_checks.hpp"
#include "clients/cpp/async_relay_client.hpp"
#include "clients/cpp/line_client.hpp"
#include "clients/cpp/relay_body.hpp"
#include "clients/cpp/relay_client.hpp"
#include "core/line_session.hpp"

namespace {

using ringhub::Error;
using ringhub::rephrase;
using ringhub::Result;
using ringhub::system_error;
using ringhub::client::RelayClient;
using ringhub::protocol::UserId;

// --timeout is capped at a day: a longer wait is a typo, not a plan.
constexpr unsigned kLongestTimeoutMs = 24 * 60 * 60 * 1000;

struct Options {
  std::string hub = "127.0.0.1:7400";
  unsigned timeout_ms = 5000;
  bool verbose = false;
  std::vector<UserId> to;
  std::string body;
  std::string file;
  std::size_t count = 0;  // 0: listen until killed
  std::string line_hub = "127.0.0.1:7401";
  std::string message;
  unsigned ok_delay_ms = 0;
  unsigned attempts = 10;
};

struct Commands {
  CLI::Option* hub = nullptr;
  CLI::App* identity = nullptr;
  CLI::App* list = nullptr;
  CLI::App* relay = nullptr;
  CLI::Option* body = nullptr;
  CLI::Option* file = nullptr;
  CLI::App* listen = nullptr;
  CLI::App* line = nullptr;
};

// Ids are u64 from 1 up. Checked on the text, as CLI11 reads an empty item as 0 and wraps overflow.
CLI::Validator user_id_check() {
  const auto check = [](std::string& item) -> std::string {
    UserId id = 0;
    const char* end = item.data() + item.size();
    const auto [stop, error] = std::from_chars(item.data(), end, id);
    const bool ok = error == std::errc{} && stop == end && id != 0;
    return ok ? "" : fmt::format("'{}' is not a user id (ids are 1 to 2^64-1)", item);
  };
  return CLI::Validator(check, "ID");
}

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};

// HOST:PORT splits at the last colon, so "[::1]:7400" and a bare "::1:7400" both work. The address
// flags are checked with it while parsing (endpoint_check, which names the flag), so a use after that
// cannot fail.
Result<Endpoint> parse_endpoint(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  const Error bad = system_error(EINVAL, fmt::format("wants HOST:PORT, not '{}'", text));
  if (colon == std::string::npos || colon == 0) {
    return bad;
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = text.substr(colon + 1);
  char* end = nullptr;
  const unsigned long value = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || value == 0 || value > 65535) {
    return bad;
  }
  return Endpoint{host, static_cast<std::uint16_t>(value)};
}

// An address flag is checked while parsing, so a typo is a usage error (exit 2) before any connect.
// CLI11 names the flag in front of the message itself.
CLI::Validator endpoint_check() {
  const auto check = [](std::string& text) -> std::string {
    const Result<Endpoint> endpoint = parse_endpoint(text);
    return endpoint ? "" : endpoint.error().message;
  };
  return CLI::Validator(check, "HOST:PORT");
}

Commands add_commands(CLI::App& app, Options& o) {
  Commands c;
  c.hub = app.add_option(
                 "--hub", o.hub,
                 "Relay hub address as HOST:PORT ([v6]:PORT for an IPv6 literal); `line` takes --line-hub")
              ->capture_default_str()
              ->check(endpoint_check());
  app.add_option("--timeout", o.timeout_ms, "Milliseconds to wait for the connection and for each reply")
      ->capture_default_str()
      ->check(CLI::Range(1U, kLongestTimeoutMs));
  app.add_flag("-v,--verbose", o.verbose,
               "relay: say what was sent; line: say why each failed attempt failed");
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand too

  c.identity = app.add_subcommand("identity", "Print this connection's id");
  c.list = app.add_subcommand("list", "Print the ids of the other connected clients");
  c.relay = app.add_subcommand("relay", "Relay one body (--body, --file, or else stdin)");
  c.relay->add_option("--to", o.to, "Receiver ids, comma separated")
      ->required()
      ->delimiter(',')
      ->check(user_id_check());
  c.body = c.relay->add_option("--body", o.body, "Body text");
  c.file = c.relay->add_option("--file", o.file, "Read the body from this file")->excludes(c.body);
  c.listen = app.add_subcommand("listen", "Print deliveries as they arrive");
  c.listen->add_option("--count", o.count, "Stop after this many deliveries (default: until killed)")
      ->check(ringhub::cli::positive(o.count));
  c.line = app.add_subcommand("line", "LINE protocol: send `message X`, answer others, wait for `ok X`");
  c.line->add_option("--message", o.message, "X, the message to send")
      ->required()
      ->check(CLI::Validator(
          [](std::string& x) -> std::string {
            const Result<void> sendable = ringhub::client::check_line_message(x);
            return sendable ? "" : sendable.error().message;
          },
          "X"));
  c.line->add_option("--ok-delay", o.ok_delay_ms, "Milliseconds before answering each message")
      ->capture_default_str()
      ->check(CLI::Range(0U, kLongestTimeoutMs));
  c.line->add_option("--attempts", o.attempts, "Connection attempts before giving up")
      ->capture_default_str()
      ->check(ringhub::cli::positive(o.attempts));
  c.line->add_option("--line-hub", o.line_hub, "LINE hub address as HOST:PORT")
      ->capture_default_str()
      ->check(endpoint_check());
  // --timeout and -v are the program's flags, which a subcommand's --help does not list.
  c.line->footer("--timeout MS (before or after `line`) bounds the connect and each wait for `ok X`.");
  return c;
}

Result<std::vector<std::uint8_t>> load_body(const Options& o, const Commands& c) {
  if (c.body->count() > 0) {
    return std::vector<std::uint8_t>(o.body.begin(), o.body.end());
  }
  if (c.file->count() == 0) {
    if (fcntl(STDIN_FILENO, F_GETFD) == -1) {  // `<&-`: no body at all, not an empty one
      return system_error(errno, fmt::format("cannot read stdin: {} (give --body or --file)",
                                             std::system_category().message(errno)));
    }
    return ringhub::client::read_body(std::cin, "stdin");
  }
  std::ifstream file(o.file, std::ios::binary);
  if (!file) {
    return system_error(errno,
                        fmt::format("cannot open {}: {}", o.file, std::system_category().message(errno)));
  }
  return ringhub::client::read_body(file, o.file);
}

// "1 receiver", "2 receivers".
std::string counted(std::size_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

void print_line(const std::string& line) {
  // Flushed per line: a script reading a pipe must see each delivery as it happens.
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

Result<RelayClient> connect(const Options& o) {
  Result<Endpoint> endpoint = parse_endpoint(o.hub);
  if (!endpoint) {
    return endpoint.error();
  }
  return RelayClient::connect(endpoint->host, endpoint->port, std::chrono::milliseconds(o.timeout_ms));
}

Result<void> run_identity(RelayClient& client, const Options& o) {
  Result<UserId> id = client.identity(std::chrono::milliseconds(o.timeout_ms));
  if (!id) {
    return id.error();
  }
  print_line(std::to_string(*id));
  return {};
}

Result<void> run_list(RelayClient& client, const Options& o) {
  Result<std::vector<UserId>> ids = client.list(std::chrono::milliseconds(o.timeout_ms));
  if (!ids) {
    return ids.error();
  }
  print_line(fmt::format("{}", fmt::join(*ids, " ")));
  return {};
}

Result<void> run_relay(RelayClient& client, const Options& o, const Commands& c) {
  Result<std::vector<std::uint8_t>> body = load_body(o, c);
  if (!body) {
    return body.error();
  }
  if (Result<void> sent = client.relay(o.to, *body); !sent) {
    return sent;
  }
  // The hub answers requests in order, so once IDENTITY is answered the RELAY before it was handled
  // and closing the socket now cannot lose it.
  if (Result<UserId> id = client.identity(std::chrono::milliseconds(o.timeout_ms)); !id) {
    if (!id.error().is_system(ETIMEDOUT)) {
      return id.error();  // the hub refused or went away: its words say what became of the relay
    }
    // The RELAY was written; only its confirmation is late, so the hub may still deliver it.
    return rephrase(
        id.error(),
        fmt::format("the hub did not confirm the relay within {} ms; it may still deliver it", o.timeout_ms));
  }
  if (o.verbose) {  // the hub skips ids that are not connected without saying so
    print_line(fmt::format("relayed {} bytes naming {}", body->size(), counted(o.to.size(), "receiver")));
  }
  return {};
}

// Deliveries come whenever other clients send them, so the wait for each is unbounded.
Result<void> run_listen(RelayClient& client, const Options& o) {
  Result<UserId> id = client.identity(std::chrono::milliseconds(o.timeout_ms));
  if (!id) {
    return id.error();
  }
  print_line(fmt::format("listening as id {}", *id));
  for (std::size_t received = 0; o.count == 0 || received < o.count; ++received) {
    Result<ringhub::client::Delivery> delivery = client.next_delivery(ringhub::client::kWaitForever);
    if (!delivery) {
      return delivery.error();
    }
    print_line(fmt::format("from {}: {}", delivery->sender, ringhub::client::describe_body(delivery->body)));
  }
  return {};
}

// The LINE client makes its own connections, reconnecting as it needs to: no RelayClient here.
Result<void> run_line(const Options& o) {
  Result<Endpoint> endpoint = parse_endpoint(o.line_hub);
  if (!endpoint) {
    return endpoint.error();
  }
  ringhub::client::LineClientOptions line;
  line.host = endpoint->host;
  line.port = endpoint->port;
  line.message = o.message;
  line.ok_delay = std::chrono::milliseconds(o.ok_delay_ms);
  line.timeout = std::chrono::milliseconds(o.timeout_ms);
  line.max_attempts = o.attempts;
  if (o.verbose) {
    line.on_retry = [](const ringhub::client::LineRetry& r) {
      fmt::print(stderr, "ringhub-client: attempt {} failed: {}; retrying in {} ms\n", r.attempt,
                 r.why.message, r.backoff.count());
    };
  }
  Result<ringhub::client::LineOutcome> outcome = ringhub::client::run_line_client(line);
  if (!outcome) {
    return outcome.error();
  }
  const std::chrono::duration<double, std::milli> latency = outcome->latency;
  print_line(fmt::format("ok {} after {} ({}), latency {:.3f} ms", o.message,
                         ringhub::attempts_text(outcome->attempts), counted(outcome->reconnects, "reconnect"),
                         latency.count()));
  return {};
}

Result<void> run(const Options& o, const Commands& c) {
  if (*c.line) {
    return run_line(o);
  }
  Result<RelayClient> client = connect(o);
  if (!client) {
    return client.error();
  }
  if (*c.identity) {
    return run_identity(*client, o);
  }
  if (*c.list) {
    return run_list(*client, o);
  }
  if (*c.relay) {
    return run_relay(*client, o, c);
  }
  return run_listen(*client, o);
}

int fail(const std::string& message) {
  fmt::print(stderr, "ringhub-client: {}\n", message);
  return EXIT_FAILURE;
}

int parse_and_run(int argc, char** argv) {
  CLI::App app{"ringhub-client: talk to a ringhub relay hub"};
  Options options;
  const Commands commands = add_commands(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help arrives as a ParseError with exit code 0; CLI11 prints it.
    if (e.get_exit_code() == 0) {
      return app.exit(e);
    }
    // `ringhub-client bogus` or `ringhub-client --bogus`: CLI11 says only "A subcommand is required".
    if (const std::vector<std::string> extra = app.remaining();
        app.get_subcommands().empty() && !extra.empty()) {
      if (extra.front().starts_with('-')) {
        fail(fmt::format("unknown option '{}' (see --help)", extra.front()));
        return ringhub::cli::kExitUsage;
      }
      std::vector<std::string> commands;
      for (const CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; })) {
        commands.push_back(command->get_name());
      }
      fail(fmt::format("unknown command '{}' (commands: {}; see --help)", extra.front(),
                       fmt::join(commands, ", ")));
      return ringhub::cli::kExitUsage;
    }
    fail(fmt::format("{} (see --help)", e.what()));
    return ringhub::cli::kExitUsage;
  }
  if (*commands.relay) {  // --to's count, which a per-id validator cannot see
    if (const Result<void> fits = ringhub::client::check_relay_limits(options.to.size(), 0); !fits) {
      fail(fmt::format("--to: {}", fits.error().message));
      return ringhub::cli::kExitUsage;
    }
  }
  if (*commands.line && commands.hub->count() > 0) {
    // --hub names the relay port: taking it for the line port would speak the wrong protocol, and
    // ignoring it would reach whatever listens on --line-hub's default.
    fail("line takes its address from --line-hub, not --hub (the relay protocol's port)");
    return ringhub::cli::kExitUsage;
  }
  const Result<void> done = run(options, commands);
  return done ? EXIT_SUCCESS : fail(done.error().message);
}

}  // namespace

int main(int argc, char** argv) {
  // CLI11 and the standard library may throw (bad_alloc, a failed stream); report, never abort.
  try {
    return parse_and_run(argc, argv);
  } catch (const std::exception& e) {
    std::fputs("ringhub-client: ", stderr);
    std::fputs(e.what(), stderr);
    std::fputs("\n", stderr);
    return EXIT_FAILURE;
  }
}
