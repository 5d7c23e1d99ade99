/*
 * sentinel.cpp — asking the sentinels, one after the other.
 */
#include "core/delivery/sentinel.hpp"

#include <cstdlib>

#include "core/delivery/engine.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

SentinelResolver::SentinelResolver(std::vector<Endpoint> sentinels, std::string service, ConnectionSettings base,
								   int retry_max_ms, uint64_t seed)
	: sentinels_(std::move(sentinels)), service_(std::move(service)), base_(std::move(base)),
	  backoff_(50, retry_max_ms, seed)
{
}

SentinelResolver::~SentinelResolver() = default;

void
SentinelResolver::request()
{
	if (state_ != State::Idle)
		return;
	asked_this_round_ = 0;
	errors_.clear();
	ask_next();
}

/* Asks the next sentinel of this round; one that cannot even be reached is skipped here, not by recursion. */
void
SentinelResolver::ask_next()
{
	while (asked_this_round_ < sentinels_.size()) {
		ConnectionSettings cs = base_;
		cs.endpoint = sentinels_[next_];
		next_ = (next_ + 1) % sentinels_.size();
		asked_this_round_++;
		if (conn_)
			retired_.push_back(std::move(conn_));
		conn_ = std::make_unique<Connection>(cs);
		conn_->open();
		if (conn_->closed()) {
			errors_.push_back("sentinel " + cs.endpoint.describe() + ": " + conn_->error());
			continue;
		}
		state_ = State::Asking;
		conn_->send({"SENTINEL", "get-master-addr-by-name", service_}, [this](Reply &r) { answered(r); });
		conn_->flush();
		return;
	}
	finish_round_failed();
}

void
SentinelResolver::answered(Reply &reply)
{
	std::string where = "sentinel " + conn_->settings().endpoint.describe();
	if (reply.type == Reply::Type::Failed || reply.type == Reply::Type::Error) {
		failed(where + ": " + reply.str);
		return;
	}
	if (reply.type != Reply::Type::Array || reply.elements.size() != 2) {
		failed(where + " does not know the service \"" + service_ + "\"");
		return;
	}
	int port = atoi(reply.elements[1].str.c_str());
	if (reply.elements[0].str.empty() || port <= 0 || port > 65535) {
		failed(where + " answered an unusable address");
		return;
	}
	master_ = Endpoint();
	master_.host = reply.elements[0].str;
	master_.port = port;
	found_ = true;
	have_result_ = true;
	error_.clear();
	state_ = State::Idle;
	backoff_.reset();
	conn_->close("asked");
	retired_.push_back(std::move(conn_));
}

void
SentinelResolver::failed(const std::string &why)
{
	errors_.push_back(why);
	/* Next sentinel; out of this callback's connection first. */
	state_ = State::Asking;
	if (conn_) {
		conn_->close(why);
		retired_.push_back(std::move(conn_));
	}
	ask_next();
}

void
SentinelResolver::finish_round_failed()
{
	found_ = false;
	have_result_ = true;
	error_ = "no sentinel named the master of \"" + service_ + "\"";
	for (size_t i = 0; i < errors_.size(); i++)
		error_ += (i == 0 ? ": " : "; ") + errors_[i];
	state_ = State::BackingOff;
	retry_at_us_ = monotonic_us() + static_cast<int64_t>(backoff_.next_delay_ms()) * 1000;
}

bool
SentinelResolver::take_result(bool &found, Endpoint &master, std::string &error)
{
	if (!have_result_)
		return false;
	have_result_ = false;
	found = found_;
	master = master_;
	error = error_;
	return true;
}

void
SentinelResolver::poll_entries(std::vector<PollEntry> &out) const
{
	if (conn_ && conn_->fd() >= 0 && (conn_->want_read() || conn_->want_write()))
		out.push_back(PollEntry{conn_->fd(), conn_->socket_id(), conn_->want_read(), conn_->want_write()});
}

int64_t
SentinelResolver::deadline_us() const
{
	if (state_ == State::BackingOff)
		return retry_at_us_;
	return conn_ ? conn_->deadline_us() : 0;
}

void
SentinelResolver::on_io(int fd, bool readable, bool writable)
{
	if (conn_ && conn_->fd() == fd)
		conn_->on_io(readable, writable);
}

void
SentinelResolver::on_timer()
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
