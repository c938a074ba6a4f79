// guarded_main: the mains of the perf harnesses run their body through it, so an exception that
// escapes (an allocation or a library failure) ends in a one-line message and EXIT_FAILURE, not
// std::terminate; and spdlog (the client loop's diagnostics) writes to stderr, as stdout holds reports.
#pragma once

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace ringhub {

inline int guarded_main(std::string_view program, int (*run)(int, char**), int argc, char** argv) {
  try {
    spdlog::set_default_logger(spdlog::stderr_color_mt(std::string(program)));
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return EXIT_FAILURE;
  }
}

}  // namespace ringhub
