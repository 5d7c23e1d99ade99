/*
 * connection.cpp — the connection state machine, buffers and timeouts.
 */
#include "core/redis/connection.hpp"

#include <algorithm>
#include <chrono>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* Output already written is dropped from the buffer once it is this large. */
constexpr size_t kCompactBytes = 1024 * 1024;
/* A pipeline is written out as it grows past this, not held whole in memory. */
constexpr size_t kWriteAheadBytes = 256 * 1024;
constexpr size_t kReadChunk = 64 * 1024;

} // namespace

int64_t
monotonic_us()
{
	using namespace std::chrono;
	return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

Connection::Connection(ConnectionSettings settings) : settings_(std::move(settings)) {}

Connection::~Connection() = default;

void
Connection::set_settings(ConnectionSettings settings)
{
	if (state_ == State::Closed)
		settings_ = std::move(settings);
}

void
Connection::open()
{
	if (state_ != State::Closed)
		return;
	static uint64_t sockets_opened = 0;
	state_ = State::Connecting;
	error_.clear();
	opened_at_us_ = monotonic_us();
	socket_id_ = ++sockets_opened;
	try {
		transport_ = open_transport(settings_.endpoint, settings_.tls);
	} catch (const TransportError &e) {
		close(e.what());
		return;
	}
	advance_connect();
}

void
Connection::close(const std::string &why)
{
	if (state_ == State::Closed)
		return;
	state_ = State::Closed;
	error_ = why;
	generation_++;
	transport_.reset();
	out_.clear();
	out_pos_ = 0;
	connect_wait_ = io_wait_ = IoWait::None;
	input_left_ = false;
	reader_.reset();

	std::deque<Callback> written;
	std::deque<Queued> queued;
	written.swap(callbacks_);
	queued.swap(queued_);
	for (Callback &cb : written) {
		Reply failed = Reply::failed(why);
		cb(failed);
	}
	for (Queued &q : queued) {
		Reply failed = Reply::failed(why);
		q.cb(failed);
	}
}

void
Connection::advance_connect()
{
	try {
		connect_wait_ = transport_->connect_step();
	} catch (const TransportError &e) {
		close(e.what());
		return;
	}
	if (connect_wait_ == IoWait::None)
		start_handshake();
}

void
Connection::handshake_step_failed(const std::string &what, const Reply &reply)
{
	/* Redis's own error text is safe to show; the command's arguments are not. */
	close(what + ": " + reply.str);
}

void
Connection::start_handshake()
{
	state_ = State::Handshaking;
	auto step = [this](std::string what) {
		return [this, what](Reply &r) {
			if (r.type == Reply::Type::Failed)
				return; /* the connection is closing already */
			if (r.is_error())
				handshake_step_failed(what, r);
		};
	};

	if (!settings_.password.empty()) {
		if (settings_.user.empty())
			append({"AUTH", settings_.password}, step("authentication failed"));
		else
			append({"AUTH", settings_.user, settings_.password}, step("authentication failed"));
	}
	if (settings_.db != 0)
		append({"SELECT", std::to_string(settings_.db)}, step("SELECT failed"));
	if (!settings_.check.empty())
		append(settings_.check, [this](Reply &r) {
			if (r.type == Reply::Type::Failed)
				return;
			std::string why;
			if (r.is_error())
				handshake_step_failed(settings_.check[0] + " failed", r);
			else if (settings_.accept_check && !settings_.accept_check(r, why))
				close(why);
			else
				become_ready();
		});
	else
		append({"PING"}, [this](Reply &r) {
			if (r.type == Reply::Type::Failed)
				return;
			if (r.is_error())
				handshake_step_failed("PING failed", r);
			else
				become_ready();
		});
	write_out();
}

void
Connection::become_ready()
{
	state_ = State::Ready;
	std::deque<Queued> queued;
	queued.swap(queued_);
	for (Queued &q : queued)
		append(q.cmd, std::move(q.cb));
	write_out();
}

void
Connection::append(const Command &cmd, Callback cb)
{
	append_command(out_, cmd);
	appended(std::move(cb));
}

void
Connection::append_views(const std::vector<std::string_view> &argv, Callback cb)
{
	append_command(out_, argv);
	appended(std::move(cb));
}

void
Connection::appended(Callback cb)
{
	if (callbacks_.empty())
		reply_clock_us_ = monotonic_us(); /* the reply clock starts now */
	callbacks_.push_back(std::move(cb));
	if (state_ == State::Ready && out_.size() - out_pos_ >= kWriteAheadBytes)
		write_out();
}

void
Connection::send(const Command &cmd, Callback cb)
{
	switch (state_) {
	case State::Closed: {
		Reply failed = Reply::failed(error_.empty() ? "not connected" : error_);
		cb(failed);
		break;
	}
	case State::Ready:
		append(cmd, std::move(cb));
		break;
	default:
		queued_.push_back(Queued{cmd, std::move(cb)});
		break;
	}
}

void
Connection::send_views(const std::vector<std::string_view> &argv, Callback cb)
{
	if (state_ == State::Ready) {
		append_views(argv, std::move(cb));
		return;
	}
	send(Command(argv.begin(), argv.end()), std::move(cb));
}

void
Connection::flush()
{
	if (state_ == State::Ready || state_ == State::Handshaking)
		write_out();
}

void
Connection::write_out()
{
	io_wait_ = IoWait::None;
	while (out_pos_ < out_.size()) {
		IoWait wait = IoWait::None;
		size_t n;
		try {
			n = transport_->write(out_.data() + out_pos_, out_.size() - out_pos_, wait);
		} catch (const TransportError &e) {
			close(e.what());
			return;
		}
		if (n == 0) {
			io_wait_ = wait;
			break;
		}
		out_pos_ += n;
	}
	if (out_pos_ == out_.size()) {
		out_.clear();
		out_pos_ = 0;
	} else if (out_pos_ >= kCompactBytes) {
		out_.erase(0, out_pos_);
		out_pos_ = 0;
	}
}

/* Reads and parses at most kMaxReadPerWakeup bytes; the callbacks run for the replies completed. */
void
Connection::read_in()
{
	uint64_t generation = generation_;
	char buf[kReadChunk];
	size_t budget = kMaxReadPerWakeup;

	input_left_ = false;
	while (budget > 0) {
		IoWait wait = IoWait::None;
		size_t n;
		try {
			n = transport_->read(buf, std::min(sizeof(buf), budget), wait);
		} catch (const TransportError &e) {
			close(e.what());
			return;
		}
		if (n == 0) {
			if (wait == IoWait::Write)
				io_wait_ = IoWait::Write;
			return;
		}
		budget -= n;
		try {
			reader_.feed(buf, n);
		} catch (const std::exception &e) {
			close(e.what());
			return;
		}
		for (;;) {
			Reply reply;
			try {
				if (!reader_.next(reply))
					break;
			} catch (const std::exception &e) {
				close(e.what());
				return;
			}
			if (callbacks_.empty()) {
				close("Redis sent a reply nobody asked for");
				return;
			}
			Callback cb = std::move(callbacks_.front());
			callbacks_.pop_front();
			if (!callbacks_.empty())
				reply_clock_us_ = monotonic_us(); /* the next reply's turn */
			cb(reply);
			if (generation != generation_)
				return; /* the callback closed us */
		}
	}
	input_left_ = true; /* maybe more: read on at the next on_timer */
}

int
Connection::fd() const
{
	return transport_ ? transport_->fd() : -1;
}

bool
Connection::want_read() const
{
	if (state_ == State::Closed)
		return false;
	if (state_ == State::Connecting)
		return connect_wait_ == IoWait::Read;
	return true; /* replies, and the server closing on us */
}

bool
Connection::want_write() const
{
	if (state_ == State::Closed)
		return false;
	if (state_ == State::Connecting)
		return connect_wait_ == IoWait::Write;
	return out_pos_ < out_.size() || io_wait_ == IoWait::Write;
}

void
Connection::on_io(bool readable, bool writable)
{
	if (state_ == State::Closed)
		return;
	if (state_ == State::Connecting) {
		if (readable || writable)
			advance_connect();
		return;
	}
	uint64_t generation = generation_;
	if (writable || io_wait_ != IoWait::None)
		write_out();
	if (generation == generation_ && state_ != State::Closed && (readable || io_wait_ != IoWait::None))
		read_in();
}

int64_t
Connection::deadline_us() const
{
	if (input_left_)
		return monotonic_us();
	int64_t deadline = 0;
	if (state_ == State::Connecting || state_ == State::Handshaking)
		deadline = opened_at_us_ + static_cast<int64_t>(settings_.connect_timeout_ms) * 1000;
	if (!callbacks_.empty()) {
		int64_t reply_deadline = reply_clock_us_ + static_cast<int64_t>(settings_.command_timeout_ms) * 1000;
		if (deadline == 0 || reply_deadline < deadline)
			deadline = reply_deadline;
	}
	return deadline;
}

void
Connection::on_timer()
{
	if (state_ == State::Closed)
		return;
	if (input_left_) {
		/* What arrived in time still counts: read it before judging the deadline. */
		read_in();
		if (state_ == State::Closed)
			return;
	}
	int64_t now = monotonic_us();
	if ((state_ == State::Connecting || state_ == State::Handshaking) &&
		now >= opened_at_us_ + static_cast<int64_t>(settings_.connect_timeout_ms) * 1000) {
		close("no connection within cachebust.connect_timeout_ms (" +
			  std::to_string(settings_.connect_timeout_ms) + " ms)");
		return;
	}
	if (!callbacks_.empty() &&
		now >= reply_clock_us_ + static_cast<int64_t>(settings_.command_timeout_ms) * 1000)
		close("no reply within cachebust.command_timeout_ms (" +
			  std::to_string(settings_.command_timeout_ms) + " ms)");
}

} // namespace cachebust
