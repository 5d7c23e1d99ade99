/*
 * wait_set.cpp — the worker's WaitEventSet.
 */
#include "pg/wait_set.hpp"

#include "pg/guard.hpp"

namespace cachebust::pg {

static uint32
socket_events(const PollEntry &e)
{
	return (e.read ? WL_SOCKET_READABLE : 0) | (e.write ? WL_SOCKET_WRITEABLE : 0);
}

WaitSet::~WaitSet()
{
	if (set_ != nullptr)
		FreeWaitEventSet(set_);
}

void
WaitSet::rebuild(const std::vector<PollEntry> &sockets)
{
	registered_.clear();
	pg_call([&] {
		if (set_ != nullptr)
			FreeWaitEventSet(set_);
		set_ = nullptr;
		set_ = CreateWaitEventSet(TopMemoryContext, static_cast<int>(sockets.size()) + 2);
		AddWaitEventToSet(set_, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
		AddWaitEventToSet(set_, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
		for (const PollEntry &e : sockets)
			AddWaitEventToSet(set_, socket_events(e), e.fd, nullptr, nullptr);
	});
	registered_ = sockets;
}

bool
WaitSet::wait(const std::vector<PollEntry> &sockets, long timeout_ms, std::vector<Ready> &ready)
{
	bool same = set_ != nullptr && sockets.size() == registered_.size();
	for (size_t i = 0; same && i < sockets.size(); i++)
		same = sockets[i].fd == registered_[i].fd && sockets[i].socket_id == registered_[i].socket_id;
	if (!same)
		rebuild(sockets);
	else
		for (size_t i = 0; i < sockets.size(); i++)
			if (socket_events(sockets[i]) != socket_events(registered_[i])) {
				/* Positions: 0 the latch, 1 postmaster death, then the sockets. */
				pg_call([&] { ModifyWaitEvent(set_, static_cast<int>(i) + 2, socket_events(sockets[i]), nullptr); });
				registered_[i] = sockets[i];
			}

	WaitEvent events[16];
	int n = 0;
	pg_call([&] { n = WaitEventSetWait(set_, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION); });
	bool latch = false;
	ready.clear();
	for (int i = 0; i < n; i++) {
		if (events[i].events & WL_LATCH_SET) {
			ResetLatch(MyLatch); /* (cannot fail) */
			latch = true;
		} else if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			ready.push_back(Ready{events[i].fd, (events[i].events & WL_SOCKET_READABLE) != 0,
								  (events[i].events & WL_SOCKET_WRITEABLE) != 0});
	}
	return latch;
}

} // namespace cachebust::pg
