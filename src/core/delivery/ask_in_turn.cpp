/*
 * ask_in_turn.cpp — one question, the servers in turn.
 */
#include "core/delivery/ask_in_turn.hpp"

#include "core/delivery/engine.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

AskInTurn::AskInTurn(std::vector<Endpoint> servers, ConnectionSettings base, Command question, Accept accept,
					 std::string who, std::string what, int retry_max_ms, uint64_t seed)
	: servers_(std::move(servers)), base_(std::move(base)), question_(std::move(question)),
	  accept_(std::move(accept)), who_(std::move(who)), what_(std::move(what)), backoff_(50, retry_max_ms, seed)
{
}

AskInTurn::~AskInTurn() = default;

void
AskInTurn::set_servers(std::vector<Endpoint> servers)
{
	if (!servers.empty()) {
		servers_ = std::move(servers);
		next_ %= servers_.size();
	}
}

void
AskInTurn::request()
{
	if (state_ != State::Idle)
		return;
	asked_this_round_ = 0;
	failures_.clear();
	ask_next();
}

/* Asks the next server of this round; one that cannot even be reached is skipped here, not by recursion. */
void
AskInTurn::ask_next()
{
	while (asked_this_round_ < servers_.size()) {
		ConnectionSettings cs = base_;
		asking_ = next_;
		cs.endpoint = servers_[asking_];
		next_ = (next_ + 1) % servers_.size();
		asked_this_round_++;
		if (conn_)
			retired_.push_back(std::move(conn_));
		conn_ = std::make_unique<Connection>(cs);
		conn_->open();
		if (conn_->closed()) {
			failures_.push_back(Failure{asking_, cs.endpoint, conn_->error()});
			continue;
		}
		state_ = State::Asking;
		conn_->send(question_, [this](Reply &r) { answered(r); });
		conn_->flush();
		return;
	}
	finish_round_failed();
}

void
AskInTurn::answered(Reply &reply)
{
	Endpoint asked = conn_->settings().endpoint;
	std::string why;
	if (reply.type == Reply::Type::Failed || reply.type == Reply::Type::Error)
		why = reply.str;
	else if (accept_(reply, asked, why)) {
		answered_ = true;
		have_result_ = true;
		error_.clear();
		state_ = State::Idle;
		backoff_.reset();
		conn_->close("asked");
		retired_.push_back(std::move(conn_));
		return;
	}
	skip(asked, why);
}

void
AskInTurn::skip(const Endpoint &asked, const std::string &why)
{
	failures_.push_back(Failure{asking_, asked, why});
	state_ = State::Asking;
	if (conn_) {
		conn_->close(why);
		retired_.push_back(std::move(conn_));
	}
	ask_next();
}

void
AskInTurn::finish_round_failed()
{
	answered_ = false;
	have_result_ = true;
	error_ = error_without_addresses_ = "no " + who_ + " told " + what_;
	error_addresses_.clear();
	for (size_t i = 0; i < failures_.size(); i++) {
		const Failure &f = failures_[i];
		std::string numbered = who_ + " " + std::to_string(f.server + 1);
		error_ += (i == 0 ? ": " : "; ") + who_ + " " + f.where.describe() + ": " + f.why;
		error_without_addresses_ += (i == 0 ? ": " : "; ") + numbered + ": " + f.why;
		error_addresses_ += (i == 0 ? "" : ", ") + numbered + " = " + f.where.describe();
	}
	state_ = State::BackingOff;
	retry_at_us_ = monotonic_us() + static_cast<int64_t>(backoff_.next_delay_ms()) * 1000;
}

bool
AskInTurn::take_result(bool &answered, std::string &error)
{
	if (!have_result_)
		return false;
	have_result_ = false;
	answered = answered_;
	error = error_;
	return true;
}

void
AskInTurn::poll_entries(std::vector<PollEntry> &out) const
{
	if (conn_ && conn_->fd() >= 0 && (conn_->want_read() || conn_->want_write()))
		out.push_back(PollEntry{conn_->fd(), conn_->socket_id(), conn_->want_read(), conn_->want_write()});
}

int64_t
AskInTurn::deadline_us() const
{
	if (state_ == State::BackingOff)
		return retry_at_us_;
	return conn_ ? conn_->deadline_us() : 0;
}

void
AskInTurn::on_io(int fd, bool readable, bool writable)
{
	if (conn_ && conn_->fd() == fd)
		conn_->on_io(readable, writable);
}

void
AskInTurn::on_timer()
{
	retired_.clear();
	if (state_ == State::BackingOff && monotonic_us() >= retry_at_us_) {
		state_ = State::Idle;
		request();
		return;
	}
	if (conn_)
		conn_->on_timer();
}

} // namespace cachebust
