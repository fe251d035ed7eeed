"""Benchmark peer: the default dialogue as an aiogram 3 FSM bot, as most Telegram lead bots are
written (default MemoryStorage). TELOXIDE_TOKEN and TELOXIDE_API_URL configure it, like the others."""

import asyncio
import os

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
)


class Form(StatesGroup):
    consent = State()
    name = State()
    phone = State()
    need = State()
    timing = State()
    offers = State()


router = Router()


def keyboard(prefix: str, labels: list[str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=f"{prefix}:{i}")]
            for i, label in enumerate(labels)
        ]
    )


@router.message(CommandStart())
async def start(message: Message, state: FSMContext) -> None:
    await state.set_state(Form.consent)
    await message.answer(
        "Hello! I'll help you find the right option and pass your request to a manager. It takes a minute."
    )
    await message.answer(
        "To contact you we need your consent to process your personal data.",
        reply_markup=keyboard("consent", ["I agree", "I don't agree"]),
    )


@router.callback_query(Form.consent)
async def consent(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    if query.data == "consent:0":
        await state.set_state(Form.name)
        await query.message.answer("What should we call you?")
    else:
        await state.clear()
        await query.message.answer("Understood. If you change your mind, press /start.")


@router.message(Form.name, F.text)
async def name(message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text)
    await state.set_state(Form.phone)
    await message.answer(
        "Leave your phone number and a manager will call you back. Press the button below or type the number.",
        reply_markup=ReplyKeyboardMarkup(
            keyboard=[[KeyboardButton(text="Share my number", request_contact=True)]],
            resize_keyboard=True,
            one_time_keyboard=True,
        ),
    )


@router.message(Form.phone)
async def phone(message: Message, state: FSMContext) -> None:
    number = message.contact.phone_number if message.contact else message.text
    if not number:
        await message.answer("Please share or type your phone number.")
        return
    await state.update_data(phone=number)
    await state.set_state(Form.need)
    await message.answer(
        "Which is closer to you right now?",
        reply_markup=keyboard("need", ["Just looking", "Comparing options", "Ready to buy, need an invoice"]),
    )


@router.callback_query(Form.need)
async def need(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.update_data(need=query.data)
    await state.set_state(Form.timing)
    await query.message.answer(
        "When are you planning to buy?",
        reply_markup=keyboard("timing", ["This month", "Within 3 months", "Not sure yet"]),
    )


@router.callback_query(Form.timing)
async def timing(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.update_data(timing=query.data)
    await state.set_state(Form.offers)
    await query.message.answer(
        "May we send you special offers? No more than twice a week.",
        reply_markup=keyboard("offers", ["Yes, please", "No, thanks"]),
    )


@router.callback_query(Form.offers)
async def offers(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.clear()
    await query.message.answer("Thank you! We'll send you a selection and our best terms.")


@router.message()
async def other(message: Message) -> None:
    await message.answer("Please use the buttons above.")


async def main() -> None:
    api = os.environ.get("TELOXIDE_API_URL")
    session = AiohttpSession(api=TelegramAPIServer.from_base(api)) if api else AiohttpSession()
    bot = Bot(token=os.environ["TELOXIDE_TOKEN"], session=session)
    dp = Dispatcher()
    dp.include_router(router)
    await dp.start_polling(bot)


if __name__ == "__main__":
    asyncio.run(main())
