/*
 * ask_in_turn.hpp — asking a list of servers one question until one gives
 * a usable answer: the sentinels where the master is, the cluster's nodes
 * how the slots are spread.
 *
 * Each server is asked in turn (a round); a server that cannot be reached,
 * errs, or gives an answer `accept` refuses is skipped, and a round in which
 * none answers is retried with backoff. Nothing blocks: the owner polls the
 * connection with its other sockets, like a lane's.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/backoff.hpp"
#include "core/redis/connection.hpp"

namespace cachebust {

struct PollEntry;

class AskInTurn
{
  public:
	/* Takes a reply from `asked`: true if usable (the caller keeps what it
	 * needs from it), false with why not. */
	using Accept = std::function<bool(const Reply &reply, const Endpoint &asked, std::string &why)>;

	/* base: TLS, timeouts, credentials; `who` names the servers in messages
	 * ("sentinel"), `what` the answer sought ("the master of \"cache\""). */
	AskInTurn(std::vector<Endpoint> servers, ConnectionSettings base, Command question, Accept accept,
			  std::string who, std::string what, int retry_max_ms, uint64_t seed);
	~AskInTurn();

	/* The servers to ask from now on (e.g. the cluster's current nodes). */
	void set_servers(std::vector<Endpoint> servers);
	/* Starts a round, unless one is under way. */
	void request();
	bool busy() const { return state_ != State::Idle; }
	/* A finished round, once: answered, or not with why (naming the servers, for the server log). */
	bool take_result(bool &answered, std::string &error);
	/* The last failed round's error apart from where: the servers by their
	 * place in the list, then which address each is (not every role may
	 * see addresses: DESIGN.md, privileges). */
	const std::string &error_without_addresses() const { return error_without_addresses_; }
	const std::string &error_addresses() const { return error_addresses_; }

	void poll_entries(std::vector<PollEntry> &out) const;
	int64_t deadline_us() const;
	void on_io(int fd, bool readable, bool writable);
	void on_timer();

  private:
	enum class State { Idle, Asking, BackingOff };

	void ask_next();
	void answered(Reply &reply);
	void skip(const Endpoint &asked, const std::string &why);
	void finish_round_failed();

	std::vector<Endpoint> servers_;
	ConnectionSettings base_;
	Command question_;
	Accept accept_;
	std::string who_;
	std::string what_;
	Backoff backoff_;
	State state_ = State::Idle;
	size_t next_ = 0;	 /* the server asked next */
	size_t asking_ = 0; /* the server asked now */
	size_t asked_this_round_ = 0;
	int64_t retry_at_us_ = 0;
	std::unique_ptr<Connection> conn_;
	/* Closed, maybe from inside their own callbacks: freed in on_timer(). */
	std::vector<std::unique_ptr<Connection>> retired_;
	/* This round's failures, for the message. */
	struct Failure {
		size_t server;
		Endpoint where;
		std::string why;
	};
	std::vector<Failure> failures_;

	bool have_result_ = false;
	bool answered_ = false;
	std::string error_;
	std::string error_without_addresses_;
	std::string error_addresses_;
};

} // namespace cachebust
