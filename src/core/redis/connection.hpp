/*
 * connection.hpp — one non-blocking, pipelined connection to a Redis server.
 *
 * The owner drives it: it asks which fd to watch and for what (want_read,
 * want_write, deadline_us), waits for that together with everything else,
 * and calls on_io / on_timer. Commands may be sent at any time; they are
 * written in order once the connection is established and authenticated,
 * and each callback runs exactly once, in order, with the reply — or with a
 * Reply::failed when the connection is lost or times out before it came.
 *
 * A connection is established in steps: transport (TCP, TLS) → AUTH →
 * SELECT → (an optional check such as ROLE) → ready. A failed step closes
 * it with a message saying which step failed, without the endpoint (see
 * transport.hpp) and never with the password.
 *
 * Callbacks may send more commands on this or any other connection, and
 * may close this one; they must not destroy it.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "core/redis/resp.hpp"
#include "core/redis/transport.hpp"

namespace cachebust {

struct ConnectionSettings {
	Endpoint endpoint;
	std::shared_ptr<TlsContext> tls; /* null: plaintext */
	std::string user;
	std::string password;
	int db = 0;
	int connect_timeout_ms = 1000;
	int command_timeout_ms = 2000;
	/* Run last in the handshake; the connection fails unless accept_check
	 * accepts its reply (e.g. ROLE must say "master"). */
	Command check;
	std::function<bool(const Reply &, std::string &why)> accept_check;
};

/* Microseconds on a clock that never goes back. */
int64_t monotonic_us();

class Connection
{
  public:
	using Callback = std::function<void(Reply &)>;
	/* Bytes one on_io (or on_timer) reads at most, so a server that sends
	 * without pause cannot keep the owner from its latch and signals. */
	static constexpr size_t kMaxReadPerWakeup = 256 * 1024;
	enum class State { Closed, Connecting, Handshaking, Ready };

	explicit Connection(ConnectionSettings settings);
	~Connection();
	Connection(const Connection &) = delete;
	Connection &operator=(const Connection &) = delete;

	/* Starts connecting (from Closed). Failure to even start closes it again. */
	void open();
	/* Fails every pending callback with `why` and closes. */
	void close(const std::string &why);

	State state() const { return state_; }
	bool ready() const { return state_ == State::Ready; }
	bool closed() const { return state_ == State::Closed; }
	/* Why it last closed (empty if it never did). */
	const std::string &error() const { return error_; }
	const ConnectionSettings &settings() const { return settings_; }
	/* New settings (another endpoint, new credentials); only while closed. */
	void set_settings(ConnectionSettings settings);

	/* Queues a command; cb runs once with its reply. On a closed connection cb runs at once. */
	void send(const Command &cmd, Callback cb);
	/* The same from views of the arguments, which need only live through the call. */
	void send_views(const std::vector<std::string_view> &argv, Callback cb);
	/* Writes what it can now (call after a burst of send()). */
	void flush();
	/* Commands sent or queued that have no reply yet. */
	size_t pending() const { return callbacks_.size() + queued_.size(); }

	int fd() const;
	/* Different for every socket this process opens, so a waiter can tell a
	 * new socket from an old one that had the same fd number. */
	uint64_t socket_id() const { return socket_id_; }
	bool want_read() const;
	bool want_write() const;
	void on_io(bool readable, bool writable);
	/* Monotonic time at which on_timer must be called (0: none). Already
	 * due when a read stopped at kMaxReadPerWakeup: on_timer reads on (the
	 * rest may sit in TLS buffers, where no socket event announces it). */
	int64_t deadline_us() const;
	void on_timer();
	/* Bytes read and not yet taken as replies. */
	size_t input_buffered() const { return reader_.buffered(); }

  private:
	struct Queued {
		Command cmd;
		Callback cb;
	};

	void advance_connect();
	void start_handshake();
	void handshake_step_failed(const std::string &what, const Reply &reply);
	void become_ready();
	void write_out();
	void read_in();
	void append(const Command &cmd, Callback cb);
	void append_views(const std::vector<std::string_view> &argv, Callback cb);
	void appended(Callback cb);

	ConnectionSettings settings_;
	State state_ = State::Closed;
	std::string error_;
	std::unique_ptr<Transport> transport_;
	IoWait connect_wait_ = IoWait::None;
	IoWait io_wait_ = IoWait::None; /* TLS may need to write in order to read, or vice versa */

	std::string out_;
	size_t out_pos_ = 0;
	ReplyReader reader_;
	std::deque<Callback> callbacks_; /* written, awaiting replies, in order */
	std::deque<Queued> queued_;		 /* sent before the connection was ready */

	int64_t opened_at_us_ = 0;
	/* When the oldest reply awaited began to count: its command was appended
	 * to an idle connection, or the reply before it completed. It must be
	 * complete within command_timeout_ms; bytes that trickle in do not
	 * extend that. */
	int64_t reply_clock_us_ = 0;
	bool input_left_ = false; /* the last read stopped at kMaxReadPerWakeup */
	uint64_t generation_ = 0;	 /* bumped by close(): stops reply processing */
	uint64_t socket_id_ = 0;
};

} // namespace cachebust
