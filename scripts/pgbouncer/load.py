"""Bounded gRPC load against bookingd: C callers for D seconds, create+cancel
(2 seats) spread over the given tours. Prints bookings/s, p50/p99 (ms) and
calls by status code. Usage: load.py ADDR TOKEN CALLERS SECONDS TOUR_ID..."""
import asyncio, sys, time, uuid, collections
import grpc
from booking.v1 import booking_pb2 as pb, booking_pb2_grpc as rpc

async def main():
    addr, token, callers, seconds, *tours = sys.argv[1:]
    callers, seconds = int(callers), float(seconds)
    meta = (("authorization", f"Bearer {token}"),)
    codes = collections.Counter()
    lat = []
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = rpc.BookingServiceStub(ch)
        stop = time.monotonic() + seconds
        async def worker(i):
            n = 0
            while time.monotonic() < stop:
                tour = tours[(i + n) % len(tours)]; n += 1
                t0 = time.monotonic()
                try:
                    r = await stub.CreateBooking(pb.CreateBookingRequest(request_id=str(uuid.uuid4()), tour_id=tour,
                        num_adults=2, customer_name="Load", customer_email="load@example.com"), metadata=meta)
                    await stub.CancelBooking(pb.CancelBookingRequest(booking_id=r.booking.id, reason="load"), metadata=meta)
                    codes["OK"] += 1
                    lat.append(time.monotonic() - t0)
                except grpc.aio.AioRpcError as e:
                    codes[e.code().name + ":" + (e.details() or "")[:60]] += 1
        t = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(callers)))
        el = time.monotonic() - t
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else float("nan")
    print(f"{len(lat)/el:8.0f} bookings/s  p50 {q(0.5):7.2f} ms  p99 {q(0.99):7.2f} ms  {dict(codes)}")

asyncio.run(main())
